// One vitest run covers every suite; the slow suites are projects with their own time limits,
// and every other test file (unit, property, ...) runs with vitest's defaults.
// The machine (and CI) has 2 cores, so at most 2 test files run at once.
import { configDefaults, defineConfig } from 'vitest/config';

const slowSuites = ['test/integration/**', 'test/interop/**', 'test/crash/**', 'test/kernel/**'];

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
      {
        // Crash safety and hostile input (issue 7): kill and power-loss campaigns, fault injection,
        // protocol fuzzing, limits, load. Counts come from IOMAPD_* variables; the defaults are CI's.
        extends: true,
        test: {
          name: 'crash',
          include: ['test/crash/**/*.test.ts'],
          // After the quick suites, alone: campaigns and load tests want the whole machine.
          sequence: { groupOrder: 1 },
          testTimeout: 600_000,
          hookTimeout: 60_000,
        },
      },
      {
        // A real Linux kernel's nbd client in a QEMU guest (issue 5); scripts/rig/rig builds it.
        // Time limits are set per test in the file (each boots its own guest).
        extends: true,
        test: {
          name: 'kernel',
          include: ['test/kernel/**/*.test.ts'],
          // Last and alone: each test boots a QEMU guest that takes both cores.
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
