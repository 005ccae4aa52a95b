// The qemu: contexts over the wire, in process (docs/BACKUP.md): qemu:dirty-bitmap:FROM for each
// earlier snapshot of an export's history and qemu:allocation-depth, LISTed for "qemu:" and
// "qemu:dirty-bitmap:", answered beside base:allocation and iomapd:mapping in one BLOCK_STATUS,
// with REQ_ONE and with extended headers; a snapshot taken while serving is offered at once.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import { Engine } from '../../src/engine/engine.ts';
import { diffVolumes } from '../../src/fs/diff.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import type { TestClient } from '../support/test-client.ts';
import { startServer, type TestServer } from '../support/server-fixture.ts';
import { CHUNK, CMD, DONE, FLAG, metaData, OPT, parseBlockStatus, pattern, REP, type Chunk } from '../support/wire.ts';

const B = 4096;
const SIZE = 32 * B;
const DIRTY = 1; // NBD_STATE_DIRTY, written out again on purpose

let engine: Engine;
let store: ImageStore;
let t: TestServer;

async function write(c: TestClient, offset: number, length: number, cookie: bigint): Promise<void> {
  c.send({ type: CMD.WRITE, cookie, offset, payload: pattern(length, Number(cookie)) });
  expect((await c.reply()).error).toBe(0);
}

beforeEach(async () => {
  store = await ImageStore.create(new MemoryStorage(), { dataBytes: 16 << 20, journalBytes: 256 << 10 });
  await store.createVolume('vol', SIZE);
  engine = new Engine(store);
  t = await startServer(
    [
      { name: 'vol', device: engine.device('vol') },
      { name: 'mem', device: new MemoryDevice({ size: SIZE }) },
    ],
    'unix',
  );
  // History (blocks): 0-3 and 8 written, s1; 2 rewritten, 8 trimmed, s2; 6 written; clone c of s1, 10 written in c.
  const { c } = await client('vol', []);
  await write(c, 0, 4 * B, 1n);
  await write(c, 8 * B, B, 2n);
  await engine.snapshot('vol', 's1');
  await write(c, 2 * B, B, 3n);
  c.send({ type: CMD.TRIM, cookie: 4n, offset: 8 * B, length: B });
  expect((await c.reply()).error).toBe(0);
  await engine.snapshot('vol', 's2');
  await write(c, 6 * B, B, 5n);
  await engine.clone('s1', 'c');
  await engine.device('c').write(pattern(B, 6), 10 * B, { fua: false });
});
afterEach(async () => {
  await t.stop();
});

async function client(name: string, meta: string[], extended = false): Promise<{ c: TestClient; ids: Map<string, number> }> {
  const c = await t.connect();
  const n = await c.negotiate({ name, structured: true, extended, meta });
  return { c, ids: n.contextIds };
}

async function status(c: TestClient, offset: number, length: number, cookie: bigint, flags = 0): Promise<{ chunks: Chunk[]; byId: Map<number, number[][]> }> {
  c.send({ type: CMD.BLOCK_STATUS, flags, cookie, offset, length });
  const chunks: Chunk[] = await c.chunks();
  expect(chunks.map((x) => (x.flags & DONE) !== 0)).toEqual(chunks.map((_, i) => i === chunks.length - 1));
  const byId = new Map<number, number[][]>();
  for (const ch of chunks) {
    const s = parseBlockStatus(ch);
    byId.set(s.id, s.extents.map((e) => [Number(e.length), Number(e.flags)]));
  }
  return { chunks, byId };
}

async function listed(c: TestClient, name: string, queries: string[]): Promise<string[]> {
  const replies = await c.opt(OPT.LIST_META_CONTEXT, metaData(name, queries));
  expect(replies.at(-1)!.type).toBe(REP.ACK);
  return replies.slice(0, -1).map((r) => r.payload.subarray(4).toString('utf8'));
}

/** diffVolumes' ranges as [length, flags] runs over [0, size). */
async function expectedBitmap(from: string, to: string, size: number): Promise<number[][]> {
  const out: number[][] = [];
  let pos = 0;
  for (const r of await diffVolumes(store, from, to)) {
    if (r.offset > pos) out.push([r.offset - pos, 0]);
    const last = out.at(-1);
    if (last && last[1] === DIRTY) last[0]! += r.length;
    else out.push([r.length, DIRTY]);
    pos = r.offset + r.length;
  }
  if (pos < size) out.push([size - pos, 0]);
  return out;
}

describe('qemu:dirty-bitmap: and qemu:allocation-depth over the wire', () => {
  it('lists the bitmaps of the export\'s history; "qemu:" and "qemu:dirty-bitmap:" are LIST wildcards', async () => {
    const c = await t.connect();
    await c.start();
    expect(await listed(c, 'vol', [])).toEqual(['base:allocation', 'iomapd:mapping', 'qemu:allocation-depth', 'qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:s2']);
    expect(await listed(c, 'vol', ['qemu:'])).toEqual(['qemu:allocation-depth', 'qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:s2']);
    expect(await listed(c, 'vol', ['qemu:dirty-bitmap:'])).toEqual(['qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:s2']);
    expect(await listed(c, 'vol', ['qemu:dirty-bitmap:s2', 'qemu:dirty-bitmap:nope'])).toEqual(['qemu:dirty-bitmap:s2']);
    expect(await listed(c, 'mem', ['qemu:'])).toEqual([]);
    // A snapshot taken now is offered at once.
    await engine.snapshot('vol', 's3');
    expect(await listed(c, 'vol', ['qemu:dirty-bitmap:'])).toEqual(['qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:s2', 'qemu:dirty-bitmap:s3']);
  });

  it('answers every context in one request, dirty bits equal to the diff', async () => {
    const names = ['base:allocation', 'iomapd:mapping', 'qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:s2', 'qemu:allocation-depth'];
    const { c, ids } = await client('vol', names);
    expect([...ids.keys()]).toEqual(names);
    const { chunks, byId } = await status(c, 0, SIZE, 10n);
    expect(chunks).toHaveLength(5);
    expect(byId.get(ids.get('qemu:dirty-bitmap:s1')!)).toEqual(await expectedBitmap('s1', 'vol', SIZE));
    expect(byId.get(ids.get('qemu:dirty-bitmap:s1')!)).toEqual([[2 * B, 0], [B, DIRTY], [3 * B, 0], [B, DIRTY], [B, 0], [B, DIRTY], [23 * B, 0]]);
    expect(byId.get(ids.get('qemu:dirty-bitmap:s2')!)).toEqual([[6 * B, 0], [B, DIRTY], [25 * B, 0]]);
    // vol has no origin: every written block is its own (1), holes 0.
    expect(byId.get(ids.get('qemu:allocation-depth')!)).toEqual([[4 * B, 1], [2 * B, 0], [B, 1], [25 * B, 0]]);
    // REQ_ONE: one extent per chunk, none past the request.
    const one = await status(c, B, 4 * B, 11n, FLAG.REQ_ONE);
    for (const [, ext] of one.byId) expect(ext).toHaveLength(1);
    expect(one.byId.get(ids.get('qemu:dirty-bitmap:s1')!)).toEqual([[B, 0]]);
    const mid = await status(c, 2 * B, B, 12n, FLAG.REQ_ONE);
    expect(mid.byId.get(ids.get('qemu:dirty-bitmap:s1')!)).toEqual([[B, DIRTY]]);
  });

  it('snapshot and clone exports: bitmaps of their own history, depth through the origin chain', async () => {
    const t2 = await startServer(
      ['s1', 's2', 'c'].map((name) => ({ name, device: engine.device(name) })),
      'unix',
    );
    try {
      const c = await t2.connect();
      await c.start();
      expect(await listed(c, 's2', ['qemu:dirty-bitmap:'])).toEqual(['qemu:dirty-bitmap:s1']);
      expect(await listed(c, 's1', ['qemu:dirty-bitmap:'])).toEqual([]);
      expect(await listed(c, 'c', ['qemu:dirty-bitmap:'])).toEqual(['qemu:dirty-bitmap:s1']);
      c.destroy();
      const s2 = await t2.connect();
      const n = await s2.negotiate({ name: 's2', structured: true, extended: true, meta: ['qemu:dirty-bitmap:s1', 'qemu:allocation-depth'] });
      const got = await status(s2, 0, SIZE, 1n);
      expect(got.chunks.every((ch) => ch.type === CHUNK.BLOCK_STATUS_EXT)).toBe(true);
      expect(got.byId.get(n.contextIds.get('qemu:dirty-bitmap:s1')!)).toEqual(await expectedBitmap('s1', 's2', SIZE));
      // s2 (origin vol): blocks 0-1 and 3 still held by vol at the same place (2), block 2 as well
      // (vol rewrote 6, not 2, after s2).
      expect(got.byId.get(n.contextIds.get('qemu:allocation-depth')!)).toEqual([[4 * B, 2], [28 * B, 0]]);
      const cl = await t2.connect();
      const m = await cl.negotiate({ name: 'c', structured: true, meta: ['qemu:allocation-depth'] });
      // c (origin s1, origin vol): 0-1 and 3 shared with s1 and vol (3); 2 and 8 shared with s1
      // only, vol moved on (2); 10 written in c (1).
      expect((await status(cl, 0, SIZE, 1n)).byId.get(m.contextIds.get('qemu:allocation-depth')!)).toEqual([
        [2 * B, 3], [B, 2], [B, 3], [4 * B, 0], [B, 2], [B, 0], [B, 1], [21 * B, 0],
      ]);
    } finally {
      await t2.stop();
    }
  });

  it('caps one answer at 4096 runs; asking again from where it stopped covers the rest', async () => {
    const BLOCKS = 5000;
    await store.createVolume('big', BLOCKS * B);
    await engine.snapshot('big', 'empty');
    const dev = engine.device('big');
    for (let b = 0; b < BLOCKS; b += 2) await dev.write(pattern(B, b), b * B, { fua: false });
    const t3 = await startServer([{ name: 'big', device: dev }], 'unix');
    try {
      const c = await t3.connect();
      const n = await c.negotiate({ name: 'big', structured: true, extended: true, meta: ['qemu:dirty-bitmap:empty', 'qemu:allocation-depth'] });
      for (const context of ['qemu:dirty-bitmap:empty', 'qemu:allocation-depth']) {
        const id = n.contextIds.get(context)!;
        const first = (await status(c, 0, BLOCKS * B, 1n)).byId.get(id)!;
        expect(first).toHaveLength(4096);
        const runs: number[][] = [...first];
        let pos = first.reduce((k, [len]) => k + len!, 0);
        for (let cookie = 2n; pos < BLOCKS * B; cookie++) {
          const more = (await status(c, pos, BLOCKS * B - pos, cookie)).byId.get(id)!;
          runs.push(...more);
          pos += more.reduce((k, [len]) => k + len!, 0);
        }
        // every other block written: dirty / depth 1, then clean / hole
        expect(runs).toEqual(Array.from({ length: BLOCKS }, (_, b) => [B, b % 2 === 0 ? 1 : 0]));
      }
    } finally {
      await t3.stop();
    }
  });
});
