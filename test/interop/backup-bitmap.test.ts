// Incremental backup with real tools (docs/BACKUP.md), over IOMAPD_BACKUP_WORKLOADS (default 50)
// random histories built in process (writes, trims, zeroes, snapshots s1 and s2, clones), then
// served: `nbdinfo --map=qemu:dirty-bitmap:s1` on the export of s2 equals `iomapd diff IMAGE s1 s2`;
// `qemu-img map` with x-dirty-bitmap marks exactly those ranges; a full copy of s1 with nbdcopy
// plus s2's dirty ranges copied over it with libnbd equals s2 byte for byte; and
// `serve --dirty-bitmap NAME` lists that one bitmap only; `iomapd backup` on a served image (the
// daemon copies, through the control channel) equals the volume after writes by qemu-io.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DiffRange, diffVolumes, merge } from '../../src/fs/diff.ts';
import { createImageFile } from '../../src/fs/image-file.ts';
import { runHistory } from '../support/history-workload.ts';
import { MAIN, NODE } from '../support/daemon.ts';
import { type IomapdServer, iomapd, requireTool, run, runOk, runPython, startIomapd, withIomapd } from './harness.ts';

const WORKLOADS = Number(process.env.IOMAPD_BACKUP_WORKLOADS ?? 50);
const SEED = Number(process.env.IOMAPD_BACKUP_SEED ?? 20261204);
const BLOCKS = 64;
const B = 4096;
const SIZE = BLOCKS * B;

let dir = '';
let img = '';
/** Per workload: the diff s1 -> s2 (dirty ranges, zero flag dropped) as the library computes it. */
const expected: Array<Array<[number, number]>> = [];
/** Backup chains to run: a full copy of `from`, then `to`'s dirty ranges since `from` (s1 -> s2, and s1 -> the clone's snapshot). */
const chains: Array<{ from: string; to: string; dirtyBytes: number }> = [];
const name = (i: number, what: '' | '-s1' | '-s2'): string => `w${i}${what}`;
const dirtyOnly = (ranges: readonly DiffRange[]): Array<[number, number]> => merge(ranges.map((r) => ({ ...r, zero: false }))).map((r) => [r.offset, r.length]);

beforeAll(async () => {
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  dir = await mkdtemp(join(tmpdir(), 'iomapd-backup-'));
  img = join(dir, 'histories.iomapd');
  const store = await createImageFile(img, { dataBytes: WORKLOADS * 3 * SIZE + (16 << 20) });
  for (let i = 0; i < WORKLOADS; i++) {
    const h = await runHistory(store, name(i, ''), SEED + i, { blocks: BLOCKS, ops: 12, partial: false });
    expected.push(dirtyOnly(await diffVolumes(store, h.s1, h.s2)));
    for (const to of [h.s2, h.cloneSnap]) {
      if (to !== null) chains.push({ from: h.s1, to, dirtyBytes: dirtyOnly(await diffVolumes(store, h.s1, to)).reduce((n, [, len]) => n + len, 0) });
    }
  }
  await store.close();
}, 120_000);

afterAll(async () => {
  const { rm } = await import('node:fs/promises');
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** `iomapd diff --json` on the idle image agrees with the library (a few workloads: each is a process). */
it('iomapd diff prints the same ranges the served bitmaps are checked against', async () => {
  for (const i of [0, 1, 2]) {
    const r = await iomapd(['diff', img, name(i, '-s1'), name(i, '-s2'), '--json']);
    expect(dirtyOnly(JSON.parse(r.stdout).ranges)).toEqual(expected[i]);
  }
});

describe('served', () => {
  let server: IomapdServer;
  beforeAll(async () => {
    server = await startIomapd({ transport: 'unix', file: img });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('iomapd diff works on the served image too, through the control channel', async () => {
    for (const i of [0, 1]) {
      const r = await iomapd(['diff', img, name(i, '-s1'), name(i, '-s2'), '--json'], { server });
      expect(dirtyOnly(JSON.parse(r.stdout).ranges)).toEqual(expected[i]);
    }
  });

  it(`nbdinfo --map=qemu:dirty-bitmap:s1 on s2 equals the diff (${WORKLOADS} histories)`, async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    let dirtyBytes = 0;
    for (let i = 0; i < WORKLOADS; i++) {
      const r = await runOk('nbdinfo', [`--map=qemu:dirty-bitmap:${name(i, '-s1')}`, server.uriFor(name(i, '-s2'))], { server });
      const rows = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/));
      // "offset length flags description": contiguous over the export, flags 1 = dirty
      expect(rows.reduce((n, x) => n + Number(x[1]), 0)).toBe(SIZE);
      const dirty = rows.filter((x) => x[2] === '1').map((x) => [Number(x[0]), Number(x[1])] as [number, number]);
      expect(dirty, name(i, '-s2')).toEqual(expected[i]);
      dirtyBytes += dirty.reduce((n, x) => n + x[1], 0);
    }
    expect(dirtyBytes).toBeGreaterThan(0);
  });

  it('qemu-img map with x-dirty-bitmap marks exactly the dirty ranges (as "data": false)', async (ctx) => {
    requireTool(ctx, 'qemu-img');
    const sock = join(server.dir, 'nbd.sock');
    for (let i = 0; i < Math.min(WORKLOADS, 20); i++) {
      const opts = `driver=nbd,server.type=unix,server.path=${sock},export=${name(i, '-s2')},x-dirty-bitmap=qemu:dirty-bitmap:${name(i, '-s1')}`;
      const r = await runOk('qemu-img', ['map', '--output=json', '--image-opts', opts], { server });
      const rows = JSON.parse(r.stdout) as Array<{ start: number; length: number; data: boolean }>;
      // qemu reads the bitmap in place of base:allocation: NBD_STATE_DIRTY is bit 0, the bit
      // base:allocation calls HOLE, so a dirty range is one qemu-img reports without data.
      const dirty = merge(rows.filter((x) => !x.data).map((x) => ({ offset: x.start, length: x.length, zero: false }))).map((x) => [x.offset, x.length]);
      expect(dirty, name(i, '-s2')).toEqual(expected[i]);
    }
  });

  it(`a full copy of s1 (nbdcopy) plus the dirty ranges of s2, or of a clone's snapshot (libnbd), equals it (${WORKLOADS} histories)`, async (ctx) => {
    requireTool(ctx, 'nbdcopy', 'python3-nbd');
    const files: string[] = [];
    for (const [k, c] of chains.entries()) {
      const file = join(dir, `backup-${k}.raw`);
      await writeFile(file, '');
      await runOk('nbdcopy', [server.uriFor(c.from), file], { server });
      expect((await readFile(file)).length).toBe(SIZE);
      files.push(`${c.from}=${c.to}=${file}`);
    }
    expect(chains.length).toBeGreaterThan(WORKLOADS);
    const script = String.raw`
import nbd, sys
sock = sys.argv[1]
copied = total = 0
for chain in sys.argv[2:]:
    base, target, path = chain.split('=', 2)
    bitmap = 'qemu:dirty-bitmap:' + base
    h = nbd.NBD()
    h.add_meta_context(bitmap)
    h.connect_uri('nbd+unix:///%s?socket=%s' % (target, sock))
    assert h.can_meta_context(bitmap)
    size = h.get_size()
    dirty = []
    pos = 0
    while pos < size:
        reached = []
        def extents(context, offset, entries, err):
            if context == bitmap:
                for k in range(0, len(entries), 2):
                    if entries[k + 1] & 1:
                        dirty.append((offset, entries[k]))
                    offset += entries[k]
                reached.append(offset)
            return 0
        h.block_status(size - pos, pos, extents)
        pos = reached[-1]
    with open(path, 'r+b') as f:
        for off, length in dirty:
            f.seek(off)
            f.write(h.pread(length, off))
            copied += length
    whole = h.pread(size, 0)
    with open(path, 'rb') as f:
        if f.read() != whole:
            print('MISMATCH %s' % target)
            sys.exit(1)
    total += size
    h.shutdown()
print('copied %d of %d bytes' % (copied, total))
`;
    const r = await runPython(server, script, [join(server.dir, 'nbd.sock'), ...files]);
    const m = /copied (\d+) of (\d+) bytes/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    const dirtyBytes = chains.reduce((n, c) => n + c.dirtyBytes, 0);
    expect(Number(m![1])).toBe(dirtyBytes);
    expect(Number(m![1])).toBeLessThan(Number(m![2]));
    console.log(`incremental backup: ${chains.length} chains over ${WORKLOADS} histories, ${r.stdout.trim()}`);
  }, 300_000);
});

it('serve --dirty-bitmap NAME lists that bitmap only; a name that is no snapshot is refused', async (ctx) => {
  requireTool(ctx, 'nbdinfo');
  await withIomapd({ transport: 'unix', file: img, extraArgs: ['--dirty-bitmap', 'w0-s1'] }, async (server) => {
    const r = await runOk('nbdinfo', ['--json', server.uriFor('w0')], { server });
    const contexts = JSON.parse(r.stdout).exports[0].contexts as string[];
    expect(contexts.filter((c) => c.startsWith('qemu:dirty-bitmap:'))).toEqual(['qemu:dirty-bitmap:w0-s1']);
    expect(contexts).toContain('qemu:allocation-depth');
  });
  const r = await run(NODE, [MAIN, 'serve', img, '--socket', join(dir, 'x.sock'), '--dirty-bitmap', 'w0']);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^iomapd: NOT_FOUND: --dirty-bitmap w0: .* has no snapshot named "w0"/);
});

it('iomapd backup on a served image: the daemon takes the snapshot and copies; full, then incremental', async (ctx) => {
  requireTool(ctx, 'qemu-io', 'nbdcopy');
  await withIomapd({ transport: 'unix', backend: 'image', exportName: 'vol', size: '8M' }, async (server) => {
    const image = server.image!;
    const io = (...cmds: string[]) => runOk('qemu-io', ['-f', 'raw', server.uriFor('vol'), ...cmds.flatMap((c) => ['-c', c])], { server });
    const copy = join(server.dir, 'vol.raw');
    await io('write -P 0x61 0 1M', 'write -P 0x62 4M 64k');
    const full = await iomapd(['backup', image, 'vol', '--to', copy, '--json'], { server });
    expect(JSON.parse(full.stdout)).toMatchObject({ snapshot: 'vol@backup-1', since: null, bytesWritten: (1 << 20) + (64 << 10) });
    await io('write -P 0x63 512k 8k', 'discard 4M 64k', 'write -z 0 64k');
    const inc = await iomapd(['backup', image, 'vol', '--to', copy, '--since', 'vol@backup-1', '--json'], { server });
    const report = JSON.parse(inc.stdout);
    expect(report).toMatchObject({ snapshot: 'vol@backup-2', since: 'vol@backup-1' });
    expect(report.bytesWritten + report.bytesZeroed).toBe((8 << 10) + (64 << 10) + (64 << 10));
    // the daemon exported its snapshot: the copy equals it, and the volume (nothing written since)
    for (const name of ['vol@backup-2', 'vol']) {
      const check = join(server.dir, `${name}.check`);
      await runOk('nbdcopy', [server.uriFor(name), check], { server });
      expect((await readFile(copy)).equals(await readFile(check)), name).toBe(true);
    }
  });
}, 120_000);
