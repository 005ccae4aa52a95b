// One vitest run covers every suite; the slow suites are projects with their own time limits,
// and every other test file (unit, property, ...) runs with vitest's defaults.
// The machine (and CI) has 2 cores, so at most 2 test files run at once.
import { configDefaults, defineConfig } from 'vitest/config';

const slowSuites = ['test/integration/**', 'test/interop/**'];

export default defineConfig({
  test: {
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...slowSuites],
        },
      },
      {
        // iomapd's own client on loopback.
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        // Real NBD clients (libnbd tools, qemu, fio) against a child iomapd.
        extends: true,
        test: {
          name: 'interop',
          include: ['test/interop/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 30_000,
        },
      },
    ],
  },
});
