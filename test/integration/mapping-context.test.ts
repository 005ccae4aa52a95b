// The iomapd:mapping meta context over the wire, in process: an image volume (engine device) next
// to a memory export. LIST/SET per export, one BLOCK_STATUS chunk per selected context with its
// own extents and id, DONE on the last, REQ_ONE per context, and SHARED after a snapshot.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import { Engine } from '../../src/engine/engine.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import type { TestClient } from '../support/test-client.ts';
import { startServer, type TestServer } from '../support/server-fixture.ts';
import { CHUNK, CMD, DONE, FLAG, metaData, OPT, parseBlockStatus, pattern, REP, type Chunk } from '../support/wire.ts';

const B = 4096;
const SIZE = 64 * B;
// iomapd:mapping flags (docs/CONTEXTS.md), written out again on purpose.
const HOLE = 0;
const UNWRITTEN = 1;
const MAPPED = 2;
const SHARED = 4;

let engine: Engine;
let t: TestServer;

beforeEach(async () => {
  const store = await ImageStore.create(new MemoryStorage(), { dataBytes: 2 << 20, journalBytes: 256 << 10 });
  await store.createVolume('vol', SIZE);
  engine = new Engine(store);
  t = await startServer(
    [
      { name: 'vol', device: engine.device('vol') },
      { name: 'mem', device: new MemoryDevice({ size: SIZE }) },
    ],
    'unix',
  );
});
afterEach(async () => {
  await t.stop();
});

async function client(name: string, meta: string[], extended = false): Promise<{ c: TestClient; ids: Map<string, number> }> {
  const c = await t.connect();
  const n = await c.negotiate({ name, structured: true, extended, meta });
  return { c, ids: n.contextIds };
}

/** The chunks of one BLOCK_STATUS, as {context id -> [length, flags][]}, checking DONE is last. */
async function status(c: TestClient, offset: number, length: number, cookie: bigint, flags = 0): Promise<Map<number, number[][]>> {
  c.send({ type: CMD.BLOCK_STATUS, flags, cookie, offset, length });
  const chunks: Chunk[] = await c.chunks();
  expect(chunks.map((x) => (x.flags & DONE) !== 0)).toEqual(chunks.map((_, i) => i === chunks.length - 1));
  const out = new Map<number, number[][]>();
  for (const ch of chunks) {
    const s = parseBlockStatus(ch);
    out.set(s.id, s.extents.map((e) => [Number(e.length), Number(e.flags)]));
  }
  return out;
}

async function listed(c: TestClient, name: string, queries: string[]): Promise<string[]> {
  const replies = await c.opt(OPT.LIST_META_CONTEXT, metaData(name, queries));
  expect(replies.at(-1)!.type).toBe(REP.ACK);
  return replies.slice(0, -1).map((r) => r.payload.subarray(4).toString('utf8'));
}

describe('iomapd:mapping over the wire', () => {
  it('is listed for the image volume only; "iomapd:" is a LIST wildcard', async () => {
    const c = await t.connect();
    await c.start();
    // (and qemu:allocation-depth, an image volume's qemu: context: backup-contexts.test.ts)
    expect(await listed(c, 'vol', [])).toEqual(['base:allocation', 'iomapd:mapping', 'qemu:allocation-depth']);
    expect(await listed(c, 'vol', ['iomapd:'])).toEqual(['iomapd:mapping']);
    expect(await listed(c, 'mem', [])).toEqual(['base:allocation']);
    expect(await listed(c, 'mem', ['iomapd:', 'iomapd:mapping'])).toEqual([]);
  });

  it('answers one chunk per context, each with its own extents, in id order', async () => {
    const { c, ids } = await client('vol', ['base:allocation', 'iomapd:mapping']);
    const base = ids.get('base:allocation')!;
    const mapping = ids.get('iomapd:mapping')!;
    expect(base).not.toBe(mapping);
    c.send({ type: CMD.WRITE, cookie: 1n, offset: 2 * B, payload: pattern(2 * B, 1) });
    expect((await c.reply()).error).toBe(0);
    c.send({ type: CMD.WRITE_ZEROES, flags: FLAG.NO_HOLE, cookie: 2n, offset: 4 * B, length: 2 * B });
    expect((await c.reply()).error).toBe(0);

    const got = await status(c, 0, 8 * B, 3n);
    expect([...got.keys()]).toEqual([base, mapping]);
    expect(got.get(base)).toEqual([[2 * B, 3], [2 * B, 0], [2 * B, 2], [2 * B, 3]]);
    expect(got.get(mapping)).toEqual([[2 * B, HOLE], [2 * B, MAPPED], [2 * B, UNWRITTEN], [2 * B, HOLE]]);

    // REQ_ONE: exactly one extent in each chunk.
    const one = await status(c, B, 8 * B, 4n, FLAG.REQ_ONE);
    expect(one.get(base)).toEqual([[B, 3]]);
    expect(one.get(mapping)).toEqual([[B, HOLE]]);
  });

  it('shows shared extents after a snapshot, and exclusive ones again after copy-on-write', async () => {
    const { c, ids } = await client('vol', ['iomapd:mapping'], true);
    const mapping = ids.get('iomapd:mapping')!;
    c.send({ type: CMD.WRITE, cookie: 1n, offset: 0, payload: pattern(4 * B, 2) });
    expect((await c.reply()).error).toBe(0);
    await engine.snapshot('vol', 'snap');
    expect((await status(c, 0, 8 * B, 2n)).get(mapping)).toEqual([[4 * B, MAPPED | SHARED], [4 * B, HOLE]]);

    // A 512-byte write into a shared block copies that block up; the rest stays shared.
    c.send({ type: CMD.WRITE, cookie: 3n, offset: B + 512, payload: pattern(512, 3) });
    expect((await c.reply()).error).toBe(0);
    const after = await status(c, 0, 4 * B, 4n);
    expect(after.get(mapping)).toEqual([[B, MAPPED | SHARED], [B, MAPPED], [2 * B, MAPPED | SHARED]]);
    c.send({ type: CMD.BLOCK_STATUS, cookie: 5n, offset: 0, length: 4 * B });
    expect((await c.chunks()).every((ch) => ch.type === CHUNK.BLOCK_STATUS_EXT)).toBe(true);
  });

  it('a memory export selects nothing for iomapd:mapping', async () => {
    const { ids } = await client('mem', ['iomapd:mapping']);
    expect(ids.size).toBe(0);
  });
});
