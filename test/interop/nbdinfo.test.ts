// nbdinfo (libnbd) against iomapd: what a client learns in option mode (size, flags, block
// sizes, the export list) and what block status reports (--map).
import { open, writeFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MiB, VARIANTS, describeRun, requireTool, run, runOk, runPython, withIomapd, withTempDir } from './harness.ts';
import type { IomapdServer } from './harness.ts';

interface NbdinfoExport {
  'export-name': string;
  'export-size': number;
  is_read_only: boolean;
  is_rotational: boolean;
  can_cache: boolean;
  can_df: boolean;
  can_fast_zero: boolean;
  can_flush: boolean;
  can_fua: boolean;
  can_multi_conn: boolean;
  can_trim: boolean;
  can_zero: boolean;
  contexts?: string[];
  block_size_minimum?: number;
  block_size_preferred?: number;
  block_size_maximum?: number;
}

interface NbdinfoJson {
  protocol: string;
  TLS: boolean;
  structured: boolean;
  exports: NbdinfoExport[];
}

interface Extent {
  offset: number;
  length: number;
  type: number;
}

async function nbdinfoJson(server: IomapdServer, ...args: string[]): Promise<NbdinfoJson> {
  const r = await runOk('nbdinfo', ['--json', '--no-content', ...args, server.uri], { server });
  return JSON.parse(r.stdout) as NbdinfoJson;
}

/** `nbdinfo --map` with adjacent extents of the same type merged. */
async function allocationMap(server: IomapdServer): Promise<Extent[]> {
  const r = await runOk('nbdinfo', ['--map', '--json', server.uri], { server });
  const merged: Extent[] = [];
  for (const e of JSON.parse(r.stdout) as Extent[]) {
    const last = merged.at(-1);
    if (last !== undefined && last.type === e.type && last.offset + last.length === e.offset) last.length += e.length;
    else merged.push({ offset: e.offset, length: e.length, type: e.type });
  }
  return merged;
}

describe.each(VARIANTS)('nbdinfo over $transport ($backend)', ({ transport, backend }) => {
  it('reports the size, the transmission flags and the block sizes', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withIomapd({ transport, backend, size: '96M', exportName: 'vol' }, async (server) => {
      const info = await nbdinfoJson(server);
      expect(info.protocol).toBe('newstyle-fixed');
      expect(info.TLS).toBe(false);
      expect(info.structured).toBe(true);
      expect(info.exports).toHaveLength(1);
      expect(info.exports[0]).toMatchObject({
        'export-name': 'vol',
        'export-size': 96 * MiB,
        is_read_only: false,
        is_rotational: false,
        can_cache: true,
        can_df: true,
        can_fast_zero: true,
        can_flush: true,
        can_fua: true,
        can_multi_conn: true,
        can_trim: true,
        can_zero: true,
        block_size_minimum: 512,
        block_size_preferred: 4096,
        block_size_maximum: 32 * MiB,
      });
      expect(info.exports[0]!.contexts).toContain('base:allocation');
      // Only an image volume has mapping types to report (docs/CONTEXTS.md).
      expect(info.exports[0]!.contexts?.includes('iomapd:mapping')).toBe(backend === 'image');

      const size = await runOk('nbdinfo', ['--size', server.uri], { server });
      expect(size.stdout.trim()).toBe(String(96 * MiB));
      // The named export is also the default export.
      const viaDefault = await runOk('nbdinfo', ['--size', server.uriFor('')], { server });
      expect(viaDefault.stdout.trim()).toBe(String(96 * MiB));
      // Any other name is unknown (GO gets ERR_UNKNOWN).
      const unknown = await run('nbdinfo', ['--size', server.uriFor('no-such-export')]);
      expect(unknown.code, describeRun(unknown, server)).not.toBe(0);
      expect(unknown.timedOut).toBe(false);
    });
  });

  it('reports a read-only export as read-only', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withIomapd({ transport, backend, size: '64M', readOnly: true }, async (server) => {
      const info = await nbdinfoJson(server);
      expect(info.exports[0]).toMatchObject({ 'export-size': 64 * MiB, is_read_only: true });
      const ro = await runOk('nbdinfo', ['--is', 'readonly', server.uri], { server });
      expect(ro.code).toBe(0);
    });
  });

  it('lists the export with --list', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withIomapd({ transport, backend, size: '64M', exportName: 'listed-export' }, async (server) => {
      const info = await nbdinfoJson(server, '--list');
      const names = info.exports.map((e) => e['export-name']);
      expect(names).toContain('listed-export');
      const listed = info.exports.find((e) => e['export-name'] === 'listed-export')!;
      expect(listed['export-size']).toBe(64 * MiB);
    });
  });

  it('maps holes and data after writes (--map)', async (ctx) => {
    requireTool(ctx, 'nbdinfo', 'python3-nbd');
    await withIomapd({ transport, backend, size: '64M' }, async (server) => {
      // A fresh memory device or volume is one hole. The writes are whole MiBs so that any allocation
      // granularity up to 1 MiB maps them exactly.
      const before = await allocationMap(server);
      expect(before).toHaveLength(1);
      expect(before[0]).toMatchObject({ offset: 0, length: 64 * MiB });
      expect(before[0]!.type & 1).toBe(1); // STATE_HOLE

      await runPython(
        server,
        `import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b'\\xa5' * (1024 * 1024), 4 * 1024 * 1024)
h.pwrite(b'\\x5a' * (1024 * 1024), 40 * 1024 * 1024)
h.flush()
h.shutdown()
`,
        [server.uri],
      );

      const after = await allocationMap(server);
      const total = after.reduce((n, e) => n + e.length, 0);
      expect(total).toBe(64 * MiB);
      const data = after.filter((e) => e.type === 0).map((e) => [e.offset, e.length]);
      expect(data).toEqual([
        [4 * MiB, MiB],
        [40 * MiB, MiB],
      ]);
      for (const e of after.filter((x) => x.type !== 0)) expect(e.type & 1, `extent ${JSON.stringify(e)}`).toBe(1);
    });
  });

  // The raw-file backend does not depend on the variant's backend: run it with the memory ones.
  if (backend === 'memory') it('maps a sparse raw file: its holes as hole+zero, its data as data (SEEK_DATA), and reports its size', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTempDir(async (dir) => {
      const file = join(dir, 'disk.raw');
      await writeFile(file, Buffer.alloc(MiB, 0x42));
      await truncate(file, 24 * MiB); // the rest is a sparse tail ...
      const fh = await open(file, 'r+');
      await fh.write(Buffer.alloc(MiB, 0x43), 0, MiB, 8 * MiB); // ... but for one MiB of data
      await fh.close();
      await withIomapd({ transport, file, raw: true }, async (server) => {
        const info = await nbdinfoJson(server);
        expect(info.exports[0]!['export-size']).toBe(24 * MiB);
        const map = await allocationMap(server);
        expect(map).toEqual([
          { offset: 0, length: MiB, type: 0 },
          { offset: MiB, length: 7 * MiB, type: 3 },
          { offset: 8 * MiB, length: MiB, type: 0 },
          { offset: 9 * MiB, length: 15 * MiB, type: 3 },
        ]);
      });
    });
  });
});
