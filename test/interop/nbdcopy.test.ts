// nbdcopy (libnbd) against iomapd: file -> NBD and NBD -> file, compared with cmp, and NBD -> NBD
// between two servers. nbdcopy uses 4 connections when CAN_MULTI_CONN is advertised, 256 KiB
// requests, block status on the source and WRITE_ZEROES on the destination.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { MiB, VARIANTS, patternBytes, requireTool, runOk, withIomapd, withTempDir } from './harness.ts';

describe.each(VARIANTS)('nbdcopy over $transport ($backend)', ({ transport, backend }) => {
  it('copies a file to the export and back, byte for byte', async (ctx) => {
    requireTool(ctx, 'nbdcopy', 'cmp');
    await withTempDir(async (dir) => {
      const source = join(dir, 'source.raw');
      const back = join(dir, 'back.raw');
      await writeFile(source, patternBytes(24 * MiB, 0xc0ffee));
      await withIomapd({ transport, backend, size: '24M' }, async (server) => {
        await runOk('nbdcopy', ['--flush', source, server.uri], { server });
        await runOk('nbdcopy', [server.uri, back], { server });
      });
      await runOk('cmp', [source, back]);
    });
  });

  it('copies from one export to another (NBD -> NBD), then to a file', async (ctx) => {
    requireTool(ctx, 'nbdcopy', 'cmp');
    await withTempDir(async (dir) => {
      const source = join(dir, 'source.raw');
      const back = join(dir, 'back.raw');
      await writeFile(source, patternBytes(16 * MiB, 0x5eed));
      await withIomapd({ transport, backend, size: '16M' }, async (from) => {
        await withIomapd({ transport, file: join(dir, 'target.raw'), raw: true, size: '16M' }, async (to) => {
          await runOk('nbdcopy', [source, from.uri], { server: from });
          // --allocated: zeros are written as allocated zeros (WRITE_ZEROES with NO_HOLE).
          await runOk('nbdcopy', ['--allocated', '--flush', from.uri, to.uri], { server: to });
          await runOk('nbdcopy', [to.uri, back], { server: to });
        });
      });
      await runOk('cmp', [source, back]);
    });
  });
});
