// `iomapd serve IMAGE --cache=none`: the image through O_DIRECT (or, where the filesystem refuses
// it, buffered I/O after one warning) under real clients: qemu-io patterns with sub-block and FUA
// writes, an nbdcopy round trip, and a clean `iomapd check` afterwards.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MiB, describeRun, iomapd, patternBytes, requireTool, run, runOk, withIomapd, withTempDir } from './harness.ts';

describe('--cache=none', () => {
  it('serves an image through O_DIRECT: qemu-io patterns, nbdcopy round trip, clean check', async (ctx) => {
    requireTool(ctx, 'qemu-io', 'nbdcopy', 'cmp');
    await withTempDir(async (dir) => {
      const source = join(dir, 'source.raw');
      const back = join(dir, 'back.raw');
      await writeFile(source, patternBytes(8 * MiB, 0xd1ec7));
      const image = join(dir, 'img.iomapd');
      await iomapd(['create', image, '--size', '32M']);
      await withIomapd({ transport: 'unix', file: image, extraArgs: ['--cache', 'none'] }, async (server) => {
        const io = server.output().split('\n').find((l) => l.includes('O_DIRECT'));
        expect(io, 'one line says how the image is accessed').toBeDefined();
        // Either O_DIRECT is in use, or the probe failed and said why.
        expect(io).toMatch(/"image opened with O_DIRECT"|"reason":".+","msg":"O_DIRECT unavailable: using buffered I\/O"/);

        const args = ['-f', 'raw', server.uri];
        for (const c of [
          'write -P 0xab 0 1M',
          'write -P 0x19 4608 1536', // sub-block, 512-aligned only
          'write -f -P 0x12 2M 64k', // FUA into a hole
          'write -f -P 0x13 2M 4k', // FUA pure overwrite
          'read -P 0xab 0 4608',
          'read -P 0x19 4608 1536',
          'read -P 0x13 2M 4k',
          'read -P 0x12 2101248 61440',
        ]) {
          args.push('-c', c);
        }
        const r = await run('qemu-io', args);
        expect(r.code, describeRun(r, server)).toBe(0);
        expect(r.stdout + r.stderr, describeRun(r, server)).not.toMatch(/fail|error|mismatch/i);

        await runOk('nbdcopy', ['--flush', source, server.uri], { server });
        await runOk('nbdcopy', [server.uri, back], { server });
      });
      // The export is 32M; compare the 8M that were copied.
      await runOk('cmp', ['-n', String(8 * MiB), source, back]);
      const check = await iomapd(['check', image]);
      expect(check.stdout).toMatch(/^clean/m);
    });
  }, 60_000);
});
