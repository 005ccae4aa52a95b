// qemu 7.2's NBD client (qemu-io, qemu-img) against iomapd: pattern writes and verified reads,
// write -z (WRITE_ZEROES), discard (TRIM), FUA writes, aio with aio_flush, and a round trip
// through qemu-img convert checked with qemu-img compare.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MiB, VARIANTS, describeRun, patternBytes, requireTool, run, runOk, withIomapd, withTempDir } from './harness.ts';
import type { IomapdServer } from './harness.ts';

/** Runs qemu-io commands on the export; fails on a non-zero exit or any complaint in the output. */
async function qemuIo(server: IomapdServer, commands: readonly string[]): Promise<string> {
  const args = ['-f', 'raw', server.uri];
  for (const c of commands) args.push('-c', c);
  const r = await run('qemu-io', args);
  const complaint = /Pattern verification failed|failed|error|Error|mismatch/;
  if (r.code !== 0 || r.timedOut || complaint.test(r.stdout) || complaint.test(r.stderr)) {
    throw new Error(`qemu-io reported a failure\n${describeRun(r, server)}`);
  }
  return r.stdout;
}

/** The number of qemu-io result lines ("wrote N/N bytes", "read N/N bytes", "discard N/N bytes"). */
function countOps(output: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of output.matchAll(/^(wrote|read|discard) (\d+)\/(\d+) bytes at offset \d+$/gm)) {
    expect(m[2], `short ${m[1]}: ${m[0]}`).toBe(m[3]);
    counts[m[1]!] = (counts[m[1]!] ?? 0) + 1;
  }
  return counts;
}

describe.each(VARIANTS)('qemu over $transport ($backend)', ({ transport, backend }) => {
  it('qemu-io: write -P / read -P, write -z, discard, FUA', async (ctx) => {
    requireTool(ctx, 'qemu-io');
    await withIomapd({ transport, backend, size: '64M' }, async (server) => {
      const out = await qemuIo(server, [
        'write -P 0xab 0 1M',
        'read -P 0xab 0 1M',
        'write -P 0x3c 1M 3M',
        'read -P 0x3c 1M 3M',
        // 512-byte-aligned but not 4096-aligned: the sub-block path.
        'write -P 0x19 4608 1536',
        'read -P 0xab 0 4608',
        'read -P 0x19 4608 1536',
        'read -P 0xab 6144 1042432',
        'write -f -P 0x12 8M 64k', // FUA
        'read -P 0x12 8M 64k',
        'write -z 1M 1M', // WRITE_ZEROES
        'read -P 0 1M 1M',
        'read -P 0x3c 2M 2M',
        'write -z -u 2M 512k', // WRITE_ZEROES that may unmap
        'read -P 0 2M 512k',
        'discard 3M 1M', // TRIM
        'read -P 0 3M 1M',
        'read -P 0x3c 2621440 524288',
        'flush',
        'read -P 0 63M 1M', // never written
        'write -P 0x7f 63M 1M', // the last MiB
        'read -P 0x7f 63M 1M',
      ]);
      expect(countOps(out)).toEqual({ wrote: 7, read: 13, discard: 1 });
    });
  });

  it('qemu-io: aio_write / aio_read with aio_flush', async (ctx) => {
    requireTool(ctx, 'qemu-io');
    await withIomapd({ transport, backend, size: '64M' }, async (server) => {
      const commands: string[] = [];
      for (let i = 0; i < 16; i++) commands.push(`aio_write -P ${0x40 + i} ${i * 256}k 256k`);
      commands.push('aio_write -f -P 0x99 8M 1M'); // FUA
      commands.push('aio_flush');
      for (let i = 0; i < 16; i++) commands.push(`aio_read -P ${0x40 + i} ${i * 256}k 256k`);
      commands.push('aio_read -P 0x99 8M 1M');
      commands.push('aio_flush');
      const out = await qemuIo(server, commands);
      expect(countOps(out)).toEqual({ wrote: 17, read: 17 });
    });
  });

  // The raw-file export runs with the memory variants only: it does not depend on the variant's backend.
  for (const served of backend === 'memory' ? (['memory', 'file'] as const) : (['image'] as const)) {
    it(`qemu-img convert to and from a ${served} export, then qemu-img compare`, async (ctx) => {
      requireTool(ctx, 'qemu-img');
      await withTempDir(async (dir) => {
        const source = join(dir, 'source.raw');
        const back = join(dir, 'back.raw');
        await writeFile(source, patternBytes(16 * MiB, 0x1badb002));
        const serve = served === 'file' ? { file: join(dir, 'served.raw'), raw: true, size: '16M' } : { backend, size: '16M' };
        await withIomapd({ transport, ...serve }, async (server) => {
          const info = await runOk('qemu-img', ['info', '--output=json', '-f', 'raw', server.uri], { server });
          expect((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size']).toBe(16 * MiB);

          // Onto the export (-n: it exists), with 8 coroutines and out-of-order writes.
          await runOk('qemu-img', ['convert', '-n', '-W', '-m', '8', '-f', 'raw', '-O', 'raw', source, server.uri], { server });
          await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, server.uri], { server });
          // And back.
          await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', server.uri, back], { server });
        });
        const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, back]);
        expect(cmp.code, describeRun(cmp)).toBe(0);
        expect(cmp.stdout).toContain('Images are identical');
      });
    });
  }
});
