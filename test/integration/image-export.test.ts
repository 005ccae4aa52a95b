// Semantics §9 [N] cases against an IMAGE-backed export, in process: NbdServer over the engine over
// an image store on instrumented storage (pre-filled with a garbage pattern, with fault injection,
// held sub-I/Os and a crash mode), driven by the raw test client. What the interop suite checks
// with libnbd on `iomapd serve` is checked here again where the case needs to look underneath the
// wire: backing-read counters, allocation, physical placement, the image and journal bytes, a
// sub-I/O held in flight, and the image that survives a power loss.
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { CrashStorage } from '../support/crash-storage.ts';
import { FaultStorage } from '../support/fault-storage.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { GatedStorage } from '../support/gated-storage.ts';
import type { TestClient } from '../support/test-client.ts';
import { startServer, type TestServer } from '../support/server-fixture.ts';
import { sleep, until } from '../support/test-devices.ts';
import { be32, be64, CHUNK, CMD, DONE, ERR, FLAG, parseBlockStatus, parseErrorPayload, pattern, request, type Chunk, type RequestFields } from '../support/wire.ts';

const B = 4096;
const KiB = 1024;
const MiB = 1024 * KiB;
const GARBAGE = 0xee;
const TWO_63 = 1n << 63n;
const TWO_64 = 1n << 64n;
/** base:allocation flags, written out again. */
const HOLE = 1;
const ZERO = 2;

interface Served {
  readonly t: TestServer;
  readonly engine: Engine;
  readonly store: ImageStore;
  readonly faults: FaultStorage;
  readonly gates: GatedStorage;
  readonly crash: CrashStorage | null;
  /** Every byte of the image (superblocks, journal, data area) as the storage holds it now. */
  image(): Buffer;
  /** A raw client in transmission with `name`. */
  client(name?: string, opts?: { structured?: boolean; meta?: boolean }): Promise<TestClient>;
}

let current: Served | null = null;

afterEach(async () => {
  const s = current;
  current = null;
  if (s === null) return;
  s.gates.releaseAll();
  await s.t.stop();
  await s.store.close();
});

/**
 * Serves volume `vol` (and whatever `setup` adds and `exports` names) of a fresh image whose
 * storage starts as garbage. `crashSeed` puts CrashStorage underneath.
 */
async function serve(
  opts: { dataBytes?: number; volumeBytes?: number; crashSeed?: number; exports?: string[]; setup?: (engine: Engine, store: ImageStore) => Promise<void> } = {},
): Promise<Served> {
  const dataBytes = opts.dataBytes ?? 2 * MiB;
  const initial = Buffer.alloc(dataBytes + 2 * MiB, GARBAGE);
  const crash = opts.crashSeed === undefined ? null : new CrashStorage(initial, opts.crashSeed);
  const base = crash ?? new MemoryStorage(initial);
  const gates = new GatedStorage(base);
  const faults = new FaultStorage(gates);
  const store = await ImageStore.create(faults, { dataBytes, journalBytes: 256 << 10 });
  await store.createVolume('vol', opts.volumeBytes ?? 64 * B);
  const engine = new Engine(store);
  await opts.setup?.(engine, store);
  await store.commit();
  const names = opts.exports ?? ['vol'];
  const t = await startServer(
    names.map((name) => ({ name, device: engine.device(name) })),
    'unix',
  );
  const s: Served = {
    t,
    engine,
    store,
    faults,
    gates,
    crash,
    image: () => (crash ? crash.writtenImage() : (base as MemoryStorage).snapshot()),
    async client(name = 'vol', o = {}) {
      const c = await t.connect();
      await c.negotiate({ name, structured: o.structured === true || o.meta === true, ...(o.meta === true ? { meta: ['base:allocation'] } : {}) });
      return c;
    },
  };
  current = s;
  return s;
}

let nextCookie = 1n;

/** One request on a simple-reply connection; `readLength` bytes follow a successful reply. */
async function simple(c: TestClient, fields: RequestFields, readLength = 0, timeoutMs?: number): Promise<{ error: number; data: Buffer }> {
  const cookie = nextCookie++;
  c.send({ ...fields, cookie });
  const r = await c.simpleReply(readLength, timeoutMs);
  expect(r.cookie).toBe(cookie);
  return { error: r.error, data: r.data };
}

/** One request on a structured connection: the error (0 on success) and its chunks. */
async function structured(c: TestClient, fields: RequestFields, timeoutMs?: number): Promise<{ error: number; chunks: Chunk[] }> {
  const cookie = nextCookie++;
  c.send({ ...fields, cookie });
  const r = await c.reply(timeoutMs);
  expect(r.cookie).toBe(cookie);
  for (const ch of r.chunks) expect(ch.cookie).toBe(cookie);
  return { error: r.error, chunks: r.chunks };
}

/** A structured READ, rebuilt from its chunks (which must cover the request exactly, DONE last). */
async function structuredRead(c: TestClient, offset: number, length: number): Promise<Buffer> {
  const { error, chunks } = await structured(c, { type: CMD.READ, offset, length });
  expect(error).toBe(0);
  expect(chunks.map((x) => (x.flags & DONE) !== 0)).toEqual(chunks.map((_, i) => i === chunks.length - 1));
  const out = Buffer.alloc(length, 0x5a);
  let covered = 0;
  for (const ch of chunks) {
    if (ch.type === CHUNK.NONE) continue;
    const at = Number(be64(ch.payload, 0)) - offset;
    if (ch.type === CHUNK.OFFSET_DATA) {
      ch.payload.copy(out, at, 8);
      covered += ch.payload.length - 8;
    } else {
      expect(ch.type).toBe(CHUNK.OFFSET_HOLE);
      out.fill(0, at, at + be32(ch.payload, 8));
      covered += be32(ch.payload, 8);
    }
  }
  expect(covered).toBe(length);
  return out;
}

/** base:allocation descriptors [length, flags] of one BLOCK_STATUS (one chunk, DONE). */
async function status(c: TestClient, offset: number | bigint, length: number, flags = 0): Promise<number[][]> {
  const { error, chunks } = await structured(c, { type: CMD.BLOCK_STATUS, flags, offset, length });
  expect(error).toBe(0);
  expect(chunks).toHaveLength(1);
  expect(chunks[0]!.flags & DONE).toBe(DONE);
  return parseBlockStatus(chunks[0]!).extents.map((e) => [Number(e.length), Number(e.flags)]);
}

const uniform = (buf: Buffer, byte: number): boolean => buf.every((x) => x === byte);
const allocated = (store: ImageStore): number => store.stats().dataBlocks - store.stats().freeBlocks;

/** The image bytes behind logical [pos, pos + len) of a volume, read around the engine. */
async function dataBytes(store: ImageStore, name: string, pos: number, len: number): Promise<Buffer> {
  const e = store.lookup(name, pos);
  const buf = Buffer.alloc(len);
  await store.readData(e.physical + (pos - e.offset), buf);
  return buf;
}

describe('semantics §9 over the wire, image-backed export', () => {
  it('cases 1, 2: one READ over mapped | hole | unwritten | mapped, simple and structured; the inline volume; holes and unwritten space cost no backing read', async () => {
    const s = await serve({ exports: ['vol', 'tiny'], setup: (_e, store) => store.createVolume('tiny', 2048).then(() => {}) });
    const c = await s.client();
    const d = await s.client('vol', { structured: true });
    expect((await simple(c, { type: CMD.WRITE, offset: 0, payload: pattern(2 * B, 1) })).error).toBe(0);
    expect((await simple(c, { type: CMD.WRITE_ZEROES, flags: FLAG.NO_HOLE, offset: 4 * B, length: 2 * B })).error).toBe(0);
    expect((await simple(c, { type: CMD.WRITE, offset: 6 * B, payload: pattern(B, 2) })).error).toBe(0);
    expect(s.store.lookup('vol', 4 * B).type).toBe('unwritten');
    expect(uniform(await dataBytes(s.store, 'vol', 4 * B, 2 * B), GARBAGE)).toBe(true); // zeros must not come from there
    const want = Buffer.concat([pattern(2 * B, 1), Buffer.alloc(4 * B), pattern(B, 2)]);
    expect((await simple(c, { type: CMD.READ, offset: 0, length: 7 * B }, 7 * B)).data.equals(want)).toBe(true);
    expect((await structuredRead(d, 0, 7 * B)).equals(want)).toBe(true);
    // Sub-block reads across the type boundaries.
    expect((await simple(c, { type: CMD.READ, offset: 2 * B - 512, length: 1024 }, 1024)).data.equals(want.subarray(2 * B - 512, 2 * B + 512))).toBe(true);
    expect((await structuredRead(d, 6 * B - 512, 1024)).equals(want.subarray(6 * B - 512, 6 * B + 512))).toBe(true);

    // Case 2: reads of hole and unwritten space only, in both reply styles, read nothing from the image.
    const reads = s.faults.counts.read;
    expect(uniform((await simple(c, { type: CMD.READ, offset: 2 * B, length: 4 * B }, 4 * B)).data, 0)).toBe(true);
    expect(uniform(await structuredRead(d, 2 * B + 512, 3 * B), 0)).toBe(true);
    expect(uniform((await simple(c, { type: CMD.READ, offset: 8 * B, length: 56 * B }, 56 * B)).data, 0)).toBe(true);
    expect(s.faults.counts.read - reads).toBe(0);

    // Inline (a whole volume of <= 2 KiB in this store, docs/ENGINE.md deviation 5).
    const tc = await s.client('tiny');
    const td = await s.client('tiny', { structured: true });
    expect((await simple(tc, { type: CMD.WRITE, offset: 512, payload: pattern(512, 3) })).error).toBe(0);
    expect(s.store.volume('tiny').inline).toBe(true);
    const tiny = Buffer.concat([Buffer.alloc(512), pattern(512, 3), Buffer.alloc(1024)]);
    expect((await simple(tc, { type: CMD.READ, offset: 0, length: 2048 }, 2048)).data.equals(tiny)).toBe(true);
    expect((await structuredRead(td, 0, 2048)).equals(tiny)).toBe(true);
  });

  it('case 3: BLOCK_STATUS is HOLE|ZERO for holes, ZERO for unwritten, 0 for data; REQ_ONE gives one descriptor; never past the end; agrees with READ', async () => {
    const SIZE = 64 * B;
    const s = await serve();
    const d = await s.client('vol', { meta: true });
    expect((await structured(d, { type: CMD.WRITE, offset: B, payload: pattern(B, 4) })).error).toBe(0);
    expect((await structured(d, { type: CMD.WRITE_ZEROES, flags: FLAG.NO_HOLE, offset: 2 * B, length: B })).error).toBe(0);
    expect((await structured(d, { type: CMD.WRITE, offset: SIZE - B, payload: pattern(B, 5) })).error).toBe(0);

    const all = await status(d, 512, SIZE - 512);
    expect(all).toEqual([
      [B - 512, HOLE | ZERO],
      [B, 0],
      [B, ZERO],
      [SIZE - 4 * B, HOLE | ZERO],
      [B, 0],
    ]);
    // Shape: REQ_ONE is one descriptor inside the request; at the tail nothing reaches past the end.
    expect(await status(d, 0, SIZE, FLAG.REQ_ONE)).toEqual([[B, HOLE | ZERO]]);
    expect(await status(d, B + 512, 512, FLAG.REQ_ONE)).toEqual([[512, 0]]);
    for (const [off, len] of [
      [SIZE - 2 * B, 2 * B],
      [SIZE - 512, 512],
      [SIZE - 8 * B, 8 * B],
    ] as const) {
      const tail = await status(d, off, len);
      expect(tail.length).toBeGreaterThanOrEqual(1);
      expect(tail.every(([l]) => l! > 0)).toBe(true);
      expect(off + tail.reduce((a, [l]) => a + l!, 0)).toBeLessThanOrEqual(SIZE);
    }
    // Agrees with READ: every ZERO extent reads as zeros, every data extent holds what was written.
    const data = await structuredRead(d, 0, SIZE);
    let at = 512;
    for (const [len, flags] of all) {
      const piece = data.subarray(at, at + len!);
      if (flags! & ZERO) expect(uniform(piece, 0), `extent at ${at}`).toBe(true);
      else expect(piece.some((x) => x !== 0), `extent at ${at}`).toBe(true);
      at += len!;
    }
  });

  it('cases 4, 5, 6: a block into a hole allocates one; 512 bytes into a hole or unwritten block leave zeros in the image; a sub-block overwrite keeps its block', async () => {
    const s = await serve();
    const c = await s.client();
    const d = await s.client('vol', { meta: true });
    // Case 4.
    let before = allocated(s.store);
    expect((await simple(c, { type: CMD.WRITE, offset: 3 * B, payload: pattern(B, 6) })).error).toBe(0);
    expect((await simple(c, { type: CMD.READ, offset: 3 * B, length: B }, B)).data.equals(pattern(B, 6))).toBe(true);
    expect(s.store.lookup('vol', 3 * B).type).toBe('mapped');
    expect(await status(d, 3 * B, B)).toEqual([[B, 0]]);
    expect(allocated(s.store)).toBe(before + 1);
    // Case 5: into a hole, and into an unwritten block, over garbage.
    expect((await simple(c, { type: CMD.WRITE_ZEROES, flags: FLAG.NO_HOLE, offset: 9 * B, length: B })).error).toBe(0);
    expect(uniform(await dataBytes(s.store, 'vol', 9 * B, B), GARBAGE)).toBe(true);
    for (const at of [8 * B + 1024, 9 * B + 3584]) {
      expect((await simple(c, { type: CMD.WRITE, offset: at, payload: pattern(512, 7) })).error).toBe(0);
      const block = Math.floor(at / B) * B;
      const want = Buffer.alloc(B);
      pattern(512, 7).copy(want, at - block);
      expect((await simple(c, { type: CMD.READ, offset: block, length: B }, B)).data.equals(want)).toBe(true);
      expect((await dataBytes(s.store, 'vol', block, B)).equals(want)).toBe(true);
    }
    // Case 6: no allocation, no remap, the rest of the block kept.
    expect((await simple(c, { type: CMD.WRITE, offset: 12 * B, payload: pattern(B, 8) })).error).toBe(0);
    const phys = s.store.lookup('vol', 12 * B).physical;
    before = allocated(s.store);
    expect((await simple(c, { type: CMD.WRITE, offset: 12 * B + 1024, payload: pattern(512, 9) })).error).toBe(0);
    const want = pattern(B, 8);
    pattern(512, 9).copy(want, 1024);
    expect((await simple(c, { type: CMD.READ, offset: 12 * B, length: B }, B)).data.equals(want)).toBe(true);
    expect(s.store.lookup('vol', 12 * B).physical).toBe(phys);
    expect(allocated(s.store)).toBe(before);
    expect(s.engine.counters('vol').padBytes).toBe(2 * (B - 512));
  });

  it('case 8: a write to a shared extent over the wire goes to new space; the clone sees it, the origin does not; after FLUSH the old block is exclusive again', async () => {
    const s = await serve({
      exports: ['vol', 'c'],
      setup: async (engine) => {
        await engine.device('vol').write(pattern(2 * B, 10), 0, { fua: false });
        await engine.clone('vol', 'c');
      },
    });
    const old = s.store.lookup('vol', 0).physical;
    expect(s.store.lookup('c', 0)).toMatchObject({ physical: old, shared: true });
    const cc = await s.client('c');
    const vc = await s.client('vol');
    expect((await simple(cc, { type: CMD.WRITE, offset: 0, payload: pattern(2 * B, 11) })).error).toBe(0);
    expect((await simple(cc, { type: CMD.READ, offset: 0, length: 2 * B }, 2 * B)).data.equals(pattern(2 * B, 11))).toBe(true);
    expect((await simple(vc, { type: CMD.READ, offset: 0, length: 2 * B }, 2 * B)).data.equals(pattern(2 * B, 10))).toBe(true);
    expect(s.store.lookup('c', 0).physical).not.toBe(old);
    expect((await simple(vc, { type: CMD.FLUSH })).error).toBe(0);
    expect(s.store.lookup('vol', 0)).toMatchObject({ physical: old, shared: false });
    expect(s.engine.counters('c').cowCopies).toBe(1);
    expect(s.store.verify().errors).toEqual([]);
  });

  it('cases 11-14: rejected and zero-length requests leave the image and journal byte-identical; errnos and check order as pinned; the connection stays usable', async () => {
    const SIZE = 64 * B;
    const s = await serve({
      exports: ['vol', 'snap'],
      setup: async (engine) => {
        await engine.device('vol').write(pattern(4 * B, 12), 0, { fua: false });
        await engine.device('vol').zero(8 * B, 2 * B, { fua: false, mayTrim: false, fast: false });
        await engine.snapshot('vol', 'snap');
        await engine.device('vol').write(pattern(B, 13), SIZE - B, { fua: false });
      },
    });
    const c = await s.client();
    const d = await s.client('vol', { meta: true });
    const r = await s.client('snap');
    const image = s.image();
    const counts = { ...s.faults.counts };
    const stats = s.store.stats();
    // A WRITE payload that is itself a valid WRITE: parsed as a request if it were not drained.
    const decoy = (len: number): Buffer => {
      const p = Buffer.alloc(len, 0x66);
      request({ type: CMD.WRITE, cookie: 0x666n, offset: 0, payload: Buffer.alloc(Math.max(0, Math.min(len - 28, 512)), 0x66) }).copy(p, 0);
      return p;
    };
    const expectError = async (client: TestClient, fields: RequestFields, errno: number, what: string): Promise<void> => {
      const got = client === d ? (await structured(d, fields)).error : (await simple(client, fields, fields.type === CMD.READ ? Number(fields.length ?? 0) : 0)).error;
      expect(got, what).toBe(errno);
    };

    // Case 11: misaligned, unknown command, unknown or inapplicable flag, unadvertised: EINVAL.
    const case11: Array<[string, RequestFields]> = [
      ['READ at a misaligned offset', { type: CMD.READ, offset: 100, length: 512 }],
      ['READ of a misaligned length', { type: CMD.READ, offset: 0, length: 100 }],
      ['WRITE at a misaligned offset', { type: CMD.WRITE, offset: 1, payload: decoy(512) }],
      ['WRITE of 4095 bytes', { type: CMD.WRITE, offset: B, payload: decoy(4095) }],
      ['TRIM at a misaligned offset', { type: CMD.TRIM, offset: 256, length: 512 }],
      ['WRITE_ZEROES of a misaligned length', { type: CMD.WRITE_ZEROES, offset: 0, length: 100 }],
      ['CACHE of a misaligned length', { type: CMD.CACHE, offset: 0, length: 100 }],
      ['unknown command 9', { type: 9, offset: 0, length: 512 }],
      ['unknown command 0x1234', { type: 0x1234, offset: 0, length: 512 }],
      ['WRITE with unknown flag 0x8000', { type: CMD.WRITE, flags: 0x8000, offset: 0, payload: decoy(B) }],
      ['READ with unknown flag 0x40', { type: CMD.READ, flags: 0x40, offset: 0, length: 512 }],
      ['WRITE|NO_HOLE', { type: CMD.WRITE, flags: FLAG.NO_HOLE, offset: 0, payload: decoy(B) }],
      ['WRITE|DF', { type: CMD.WRITE, flags: FLAG.DF, offset: 0, payload: decoy(B) }],
      ['WRITE|FAST_ZERO', { type: CMD.WRITE, flags: FLAG.FAST_ZERO, offset: 0, payload: decoy(B) }],
      ['TRIM|NO_HOLE', { type: CMD.TRIM, flags: FLAG.NO_HOLE, offset: 0, length: B }],
      ['TRIM|FAST_ZERO', { type: CMD.TRIM, flags: FLAG.FAST_ZERO, offset: 0, length: B }],
      ['READ|REQ_ONE', { type: CMD.READ, flags: FLAG.REQ_ONE, offset: 0, length: 512 }],
      ['READ|NO_HOLE', { type: CMD.READ, flags: FLAG.NO_HOLE, offset: 0, length: 512 }],
      ['WRITE_ZEROES|REQ_ONE', { type: CMD.WRITE_ZEROES, flags: FLAG.REQ_ONE, offset: 0, length: B }],
      ['READ|DF without structured replies (not advertised)', { type: CMD.READ, flags: FLAG.DF, offset: 0, length: 512 }],
      ['BLOCK_STATUS without a meta context (not negotiated)', { type: CMD.BLOCK_STATUS, offset: 0, length: B }],
    ];
    for (const [what, fields] of case11) await expectError(c, fields, ERR.EINVAL, what);
    await expectError(d, { type: CMD.BLOCK_STATUS, offset: 100, length: 512 }, ERR.EINVAL, 'misaligned BLOCK_STATUS');
    await expectError(d, { type: CMD.BLOCK_STATUS, flags: FLAG.DF, offset: 0, length: 512 }, ERR.EINVAL, 'BLOCK_STATUS|DF');
    await expectError(d, { type: CMD.READ, flags: FLAG.FAST_ZERO, offset: 0, length: 512 }, ERR.EINVAL, 'structured READ|FAST_ZERO');

    // Case 12: past the end, including 2^63 and 2^64 - len.
    const pastEnd: Array<[string, RequestFields, number]> = [
      ['READ straddling the end', { type: CMD.READ, offset: SIZE - 512, length: 1024 }, ERR.EINVAL],
      ['READ at the end', { type: CMD.READ, offset: SIZE, length: 512 }, ERR.EINVAL],
      ['READ at 2^63', { type: CMD.READ, offset: TWO_63, length: 512 }, ERR.EINVAL],
      ['READ at 2^64 - 512', { type: CMD.READ, offset: TWO_64 - 512n, length: 512 }, ERR.EINVAL],
      ['TRIM straddling the end', { type: CMD.TRIM, offset: SIZE - B, length: 2 * B }, ERR.EINVAL],
      ['TRIM at 2^63', { type: CMD.TRIM, offset: TWO_63, length: B }, ERR.EINVAL],
      ['TRIM at 2^64 - 4096', { type: CMD.TRIM, offset: TWO_64 - 4096n, length: B }, ERR.EINVAL],
      ['CACHE straddling the end', { type: CMD.CACHE, offset: SIZE - 512, length: 1024 }, ERR.EINVAL],
      ['CACHE at 2^64 - 512', { type: CMD.CACHE, offset: TWO_64 - 512n, length: 512 }, ERR.EINVAL],
      ['WRITE straddling the end', { type: CMD.WRITE, offset: SIZE - 512, payload: decoy(1024) }, ERR.ENOSPC],
      ['WRITE at the end', { type: CMD.WRITE, offset: SIZE, payload: decoy(512) }, ERR.ENOSPC],
      ['WRITE at 2^63', { type: CMD.WRITE, offset: TWO_63, payload: decoy(512) }, ERR.ENOSPC],
      ['WRITE at 2^64 - 512', { type: CMD.WRITE, offset: TWO_64 - 512n, payload: decoy(512) }, ERR.ENOSPC],
      ['WRITE_ZEROES straddling the end', { type: CMD.WRITE_ZEROES, offset: SIZE - B, length: 2 * B }, ERR.ENOSPC],
      ['WRITE_ZEROES at 2^63', { type: CMD.WRITE_ZEROES, offset: TWO_63, length: 512 }, ERR.ENOSPC],
      ['WRITE_ZEROES|NO_HOLE at 2^64 - 512', { type: CMD.WRITE_ZEROES, flags: FLAG.NO_HOLE, offset: TWO_64 - 512n, length: 512 }, ERR.ENOSPC],
    ];
    for (const [what, fields, errno] of pastEnd) await expectError(c, fields, errno, what);
    for (const [what, off] of [
      ['BLOCK_STATUS at the end', BigInt(SIZE)],
      ['BLOCK_STATUS at 2^63', TWO_63],
      ['BLOCK_STATUS at 2^64 - 512', TWO_64 - 512n],
    ] as const) {
      await expectError(d, { type: CMD.BLOCK_STATUS, offset: off, length: 512 }, ERR.EINVAL, what);
    }
    await expectError(d, { type: CMD.READ, offset: TWO_64 - 512n, length: 512 }, ERR.EINVAL, 'structured READ at 2^64 - 512');

    // Case 13: alignment before bounds (EINVAL, not ENOSPC); read-only before both (EPERM).
    await expectError(c, { type: CMD.WRITE, offset: SIZE + 100, payload: decoy(512) }, ERR.EINVAL, 'misaligned WRITE past the end');
    await expectError(c, { type: CMD.WRITE, offset: SIZE - 512, payload: decoy(700) }, ERR.EINVAL, 'WRITE of a misaligned length past the end');
    await expectError(c, { type: CMD.WRITE_ZEROES, offset: TWO_64 - 1n, length: 512 }, ERR.EINVAL, 'WRITE_ZEROES at 2^64 - 1');
    await expectError(c, { type: CMD.READ, offset: SIZE + 1, length: 512 }, ERR.EINVAL, 'misaligned READ past the end');
    await expectError(r, { type: CMD.WRITE, offset: SIZE, payload: decoy(512) }, ERR.EPERM, 'read-only WRITE at the end');
    await expectError(r, { type: CMD.WRITE, offset: TWO_63, payload: decoy(512) }, ERR.EPERM, 'read-only WRITE at 2^63');
    await expectError(r, { type: CMD.WRITE, offset: SIZE + 100, payload: decoy(512) }, ERR.EPERM, 'read-only misaligned WRITE past the end');
    await expectError(r, { type: CMD.WRITE_ZEROES, offset: SIZE, length: B }, ERR.EPERM, 'read-only WRITE_ZEROES past the end');
    await expectError(r, { type: CMD.TRIM, offset: TWO_64 - 4096n, length: B }, ERR.EPERM, 'read-only TRIM past the end');
    await expectError(r, { type: CMD.WRITE, offset: 0, payload: decoy(B) }, ERR.EPERM, 'read-only WRITE');

    // Case 14: zero-length requests of every type succeed with no payload and no effect.
    for (const [i, fields] of [
      { type: CMD.READ, offset: B },
      { type: CMD.WRITE, offset: B },
      { type: CMD.WRITE, flags: FLAG.FUA, offset: 20 * B },
      { type: CMD.TRIM, offset: 0 },
      { type: CMD.TRIM, flags: FLAG.FUA, offset: 0 },
      { type: CMD.WRITE_ZEROES, offset: 20 * B },
      { type: CMD.WRITE_ZEROES, flags: FLAG.NO_HOLE | FLAG.FUA, offset: 20 * B },
      { type: CMD.WRITE_ZEROES, flags: FLAG.FAST_ZERO, offset: 0 },
      { type: CMD.CACHE, offset: 0 },
    ].entries()) {
      expect((await simple(c, { ...fields, length: 0 })).error, `zero-length request ${i} (type ${fields.type})`).toBe(0);
    }
    expect((await simple(r, { type: CMD.READ, offset: 0, length: 0 })).error).toBe(0);
    expect((await structured(d, { type: CMD.BLOCK_STATUS, offset: 0, length: 0 })).error).toBe(0);
    const zr = await structured(d, { type: CMD.READ, offset: B, length: 0 });
    expect(zr.chunks).toHaveLength(1);
    expect(zr.chunks[0]!.type === CHUNK.NONE || zr.chunks[0]!.payload.length === 8).toBe(true);
    expect((await structured(d, { type: CMD.WRITE, offset: 0, length: 0 })).error).toBe(0);
    for (const x of [c, d, r]) await x.expectSilence(20);

    // Nothing above touched the image: superblocks, journal and data area byte for byte.
    expect(s.faults.counts.write).toBe(counts.write);
    expect(s.faults.counts.sync).toBe(counts.sync);
    expect(s.store.stats()).toEqual(stats);
    const now = s.image();
    expect(now.length).toBe(image.length);
    const differs = now.findIndex((x, i) => x !== image[i]);
    expect(differs, `image byte ${differs} changed`).toBe(-1);
    // And every connection is still in step.
    expect((await simple(c, { type: CMD.READ, offset: 0, length: 4 * B }, 4 * B)).data.equals(pattern(4 * B, 12))).toBe(true);
    expect((await simple(r, { type: CMD.READ, offset: SIZE - B, length: B }, B)).data.equals(Buffer.alloc(B))).toBe(true);
    expect((await structuredRead(d, SIZE - B, B)).equals(pattern(B, 13))).toBe(true);
  });

  it('case 15: 32 MiB and ~48 MiB READ and WRITE succeed; a READ over the limit is EINVAL and the next request works; a WRITE past the drain cap is a hard disconnect', async () => {
    const SIZE = 96 * MiB;
    const s = await serve({ dataBytes: 112 * MiB, volumeBytes: SIZE });
    const c = await s.client();
    const SLOW = 30_000;
    const big32 = pattern(32 * MiB, 14);
    expect((await simple(c, { type: CMD.WRITE, offset: 0, payload: big32 }, 0, SLOW)).error).toBe(0);
    expect((await simple(c, { type: CMD.READ, offset: 0, length: 32 * MiB }, 32 * MiB, SLOW)).data.equals(big32)).toBe(true);
    // ~48 MiB (nbd-tester-client's integrityhuge sends up to ~47.6 MiB), not block-aligned.
    const L48 = 48 * MiB - 1536;
    const at48 = 32 * MiB + 512;
    const big48 = pattern(L48, 15);
    expect((await simple(c, { type: CMD.WRITE, offset: at48, payload: big48 }, 0, SLOW)).error).toBe(0);
    expect((await simple(c, { type: CMD.READ, offset: at48, length: L48 }, L48, SLOW)).data.equals(big48)).toBe(true);
    const seam = (await simple(c, { type: CMD.READ, offset: 32 * MiB - B, length: 2 * B }, 2 * B)).data;
    expect(seam.subarray(0, B).equals(big32.subarray(32 * MiB - B))).toBe(true);
    expect(uniform(seam.subarray(B, B + 512), 0)).toBe(true);
    expect(seam.subarray(B + 512).equals(big48.subarray(0, B - 512))).toBe(true);
    const d = await s.client('vol', { structured: true });
    expect((await structuredRead(d, at48, L48)).equals(big48)).toBe(true);

    // Over the 64 MiB enforced limit: a READ carries no payload, so EINVAL and on we go.
    expect((await simple(c, { type: CMD.READ, offset: 0, length: 64 * MiB + 512 }, 64 * MiB + 512)).error).toBe(ERR.EINVAL);
    expect((await simple(c, { type: CMD.READ, offset: 0, length: B }, B)).data.equals(big32.subarray(0, B))).toBe(true);
    // A WRITE over the limit is also past the 64 MiB drain cap: the server hangs up without writing.
    const writes = s.faults.counts.write;
    c.write(request({ type: CMD.WRITE, cookie: 99n, offset: 0, length: 64 * MiB + 512 }));
    c.write(Buffer.alloc(MiB, 0x99));
    expect((await c.expectClose(10_000)).length).toBe(0);
    expect(s.faults.counts.write).toBe(writes);
    const e = await s.client();
    expect((await simple(e, { type: CMD.READ, offset: 0, length: 2 * B }, 2 * B)).data.equals(big32.subarray(0, 2 * B))).toBe(true);
    expect((await simple(e, { type: CMD.FLUSH })).error).toBe(0);
  }, 120_000);

  it('case 22: a FLUSH sent while writes are in flight and unreplied completes at once, on their connection and on another, without waiting for them', async () => {
    const s = await serve();
    const a = await s.client();
    const b = await s.client();
    const { dataOffset } = s.store.superblock;
    const held = s.gates.hold('write', (offset) => offset >= dataOffset);
    a.send({ type: CMD.WRITE, cookie: 1n, offset: 0, payload: pattern(B, 16) }); // held in the image
    a.send({ type: CMD.WRITE, cookie: 2n, offset: 512, payload: pattern(512, 17) }); // waits for the range lock
    a.send({ type: CMD.WRITE, flags: FLAG.FUA, cookie: 3n, offset: 8 * B, payload: pattern(B, 18) }); // held, FUA
    await until(() => held.held >= 2, 3000, 'two data writes held');
    a.send({ type: CMD.FLUSH, cookie: 4n });
    expect(await a.simpleReply()).toMatchObject({ cookie: 4n, error: 0 });
    b.send({ type: CMD.FLUSH, cookie: 5n });
    expect(await b.simpleReply()).toMatchObject({ cookie: 5n, error: 0 });
    await a.expectSilence(50); // the writes are still unreplied
    held.release();
    const replies = [await a.simpleReply(), await a.simpleReply(), await a.simpleReply()];
    expect(replies.map((x) => [x.cookie, x.error]).sort()).toEqual([
      [1n, 0],
      [2n, 0],
      [3n, 0],
    ]);
    expect((await simple(b, { type: CMD.FLUSH })).error).toBe(0);
    const want = pattern(B, 16);
    pattern(512, 17).copy(want, 512);
    expect((await simple(b, { type: CMD.READ, offset: 0, length: B }, B)).data.equals(want)).toBe(true);
    expect((await simple(b, { type: CMD.READ, offset: 8 * B, length: B }, B)).data.equals(pattern(B, 18))).toBe(true);
  });

  it('case 23: writes replied on A, FLUSH on B, read on C sees them, and after a power loss they survive (hole fill, sub-block, pure overwrite, unwritten)', async () => {
    // Seeds decide whether each unsynced write is dropped, applied or torn in the crash image.
    for (let seed = 1; seed <= 12; seed++) {
      const s = await serve({ crashSeed: seed });
      const [a, b, c] = [await s.client(), await s.client(), await s.client()];
      expect((await simple(a, { type: CMD.WRITE, offset: 0, payload: pattern(2 * B, 19) })).error).toBe(0);
      expect((await simple(a, { type: CMD.WRITE_ZEROES, flags: FLAG.NO_HOLE, offset: 10 * B, length: B })).error).toBe(0);
      expect((await simple(b, { type: CMD.FLUSH })).error).toBe(0);
      // After the first FLUSH: a pure overwrite (data only), a hole fill, a sub-block write into
      // a hole and one into unwritten space, all replied on A before B's FLUSH is sent.
      const want = Buffer.alloc(12 * B);
      pattern(2 * B, 19).copy(want, 0);
      const writes: Array<[number, Buffer]> = [
        [1024, pattern(1024, 20)],
        [4 * B, pattern(2 * B, 21)],
        [7 * B + 1536, pattern(512, 22)],
        [10 * B + 512, pattern(1024, 23)],
      ];
      for (const [at, data] of writes) {
        expect((await simple(a, { type: CMD.WRITE, offset: at, payload: data })).error).toBe(0);
        data.copy(want, at);
      }
      expect((await simple(b, { type: CMD.FLUSH })).error).toBe(0);
      expect((await simple(c, { type: CMD.READ, offset: 0, length: 12 * B }, 12 * B)).data.equals(want)).toBe(true);
      // A FLUSH that has only a pure overwrite to cover (no metadata) must still make it durable.
      expect((await simple(a, { type: CMD.WRITE, offset: 3072, payload: pattern(512, 24) })).error).toBe(0);
      pattern(512, 24).copy(want, 3072);
      expect((await simple(b, { type: CMD.FLUSH })).error).toBe(0);

      // Power loss now: only what the FLUSH made durable is promised, and that is all of it.
      const image = s.crash!.crashImage();
      current = null;
      await s.t.stop();
      await s.store.close();
      const reopened = await ImageStore.open(new MemoryStorage(image));
      expect(reopened.verify().errors, `seed ${seed}`).toEqual([]);
      const got = Buffer.alloc(12 * B);
      await new Engine(reopened).device('vol').read(got, 0);
      const wrong = got.findIndex((x, i) => x !== want[i]);
      expect(wrong, `seed ${seed}: byte ${wrong} after the crash`).toBe(-1);
      await reopened.close();
    }
  });

  it('case 25: a backing read error is an error reply with no payload (simple) or an ERROR chunk with DONE and nothing DONE before it (structured); the connection lives on', async () => {
    const s = await serve();
    const c = await s.client();
    const d = await s.client('vol', { structured: true });
    expect((await simple(c, { type: CMD.WRITE, offset: 0, payload: pattern(2 * B, 24) })).error).toBe(0);
    expect((await simple(c, { type: CMD.WRITE, offset: 4 * B, payload: pattern(2 * B, 25) })).error).toBe(0);
    for (const [off, len] of [
      [0, B], // one mapped piece
      [0, 8 * B], // mapped | hole | mapped | hole
    ] as const) {
      s.faults.failOn({ op: 'read', nth: 1, errno: 'EIO' });
      c.send({ type: CMD.READ, cookie: 1n, offset: off, length: len });
      const r1 = await c.simpleReply(len);
      expect([r1.cookie, r1.error, r1.data.length]).toEqual([1n, ERR.EIO, 0]);
      c.send({ type: CMD.READ, cookie: 2n, offset: 4 * B, length: B });
      const r2 = await c.simpleReply(B);
      expect([r2.cookie, r2.error]).toEqual([2n, 0]);
      expect(r2.data.equals(pattern(B, 25).subarray(0, B))).toBe(true);
      s.faults.clearFaults();

      s.faults.failOn({ op: 'read', nth: 1, errno: 'EIO' });
      d.send({ type: CMD.READ, cookie: 3n, offset: off, length: len });
      const chunks = await d.chunks();
      const last = chunks.at(-1)!;
      expect(last.type === CHUNK.ERROR || last.type === CHUNK.ERROR_OFFSET).toBe(true);
      expect(last.flags & DONE).toBe(DONE);
      expect(parseErrorPayload(last).error).toBe(ERR.EIO);
      expect(chunks.slice(0, -1).every((x) => (x.flags & DONE) === 0 && x.type !== CHUNK.ERROR)).toBe(true);
      s.faults.clearFaults();
      expect((await structuredRead(d, 0, 2 * B)).equals(pattern(2 * B, 24))).toBe(true);
    }
    expect(s.engine.counters('vol').errors).toBe(4);
  });

  it('case 26: a WRITE whose payload is cut off mid-stream does no backing I/O, pads nothing, allocates nothing', async () => {
    const s = await serve();
    const c = await s.client();
    expect((await simple(c, { type: CMD.WRITE, offset: 0, payload: pattern(B, 26) })).error).toBe(0);
    const image = s.image();
    const counts = { ...s.faults.counts };
    const free = s.store.stats().freeBlocks;
    const v = await s.client();
    v.write(request({ type: CMD.WRITE, cookie: 1n, offset: 8 * B + 512, length: 64 * KiB }).subarray(0, 28));
    v.write(pattern(10 * KiB, 27));
    await sleep(20);
    v.destroy();
    await until(() => s.t.server.connectionCount === 1, 3000, 'the cut-off connection to be dropped');
    expect(s.faults.counts).toEqual(counts);
    expect(s.store.stats().freeBlocks).toBe(free);
    expect(s.engine.counters('vol').padBytes).toBe(0);
    expect(s.image().equals(image)).toBe(true);
    expect((await simple(c, { type: CMD.READ, offset: 8 * B, length: 2 * B }, 2 * B)).data.equals(Buffer.alloc(2 * B))).toBe(true);
  });

  it('case 30: TRIM reads zero as HOLE|ZERO with neighbours intact and is rewritable; NO_HOLE zeroes report ZERO only and survive a full store; FAST_ZERO over a partial written edge is ENOTSUP, never without it', async () => {
    const s = await serve({ dataBytes: 16 * B });
    const d = await s.client('vol', { meta: true });
    const op = async (fields: RequestFields): Promise<number> => (await structured(d, fields)).error;
    // TRIM.
    expect(await op({ type: CMD.WRITE, offset: 0, payload: pattern(6 * B, 28) })).toBe(0);
    expect(await op({ type: CMD.TRIM, offset: B + 512, length: 3 * B })).toBe(0);
    const want = pattern(6 * B, 28);
    want.fill(0, B + 512, 4 * B + 512);
    expect((await structuredRead(d, 0, 6 * B)).equals(want)).toBe(true);
    expect(await status(d, 2 * B, 2 * B)).toEqual([[2 * B, HOLE | ZERO]]);
    expect(await op({ type: CMD.WRITE, offset: 2 * B, payload: pattern(B, 29) })).toBe(0);
    pattern(B, 29).copy(want, 2 * B);
    expect((await structuredRead(d, 0, 6 * B)).equals(want)).toBe(true);

    // FAST_ZERO over a partly covered written block: ENOTSUP, nothing changed; without it, zeros.
    expect(await op({ type: CMD.WRITE_ZEROES, flags: FLAG.FAST_ZERO, offset: 512, length: B })).toBe(ERR.ENOTSUP);
    expect(await op({ type: CMD.WRITE_ZEROES, flags: FLAG.FAST_ZERO | FLAG.NO_HOLE, offset: 5 * B + 512, length: 512 })).toBe(ERR.ENOTSUP);
    expect((await structuredRead(d, 0, 6 * B)).equals(want)).toBe(true);
    expect(await op({ type: CMD.WRITE_ZEROES, flags: FLAG.FAST_ZERO, offset: 4 * B, length: B })).toBe(0); // whole block: fast
    want.fill(0, 4 * B, 5 * B);
    for (const [at, len, flags] of [
      [512, B, 0],
      [5 * B + 512, 512, FLAG.NO_HOLE],
      [2 * B + 1024, 1024, FLAG.FUA],
    ] as const) {
      expect(await op({ type: CMD.WRITE_ZEROES, flags, offset: at, length: len }), `zero ${at}+${len}`).toBe(0);
      want.fill(0, at, at + len);
    }
    expect((await structuredRead(d, 0, 6 * B)).equals(want)).toBe(true);

    // NO_HOLE: ZERO without HOLE over the whole range, edges included (docs/ENGINE.md deviation 7).
    expect(await op({ type: CMD.WRITE_ZEROES, flags: FLAG.NO_HOLE, offset: 8 * B + 512, length: 4 * B })).toBe(0);
    expect(await status(d, 8 * B, 5 * B)).toEqual([[5 * B, ZERO]]);
    // Fill the store over the wire until WRITE says ENOSPC; the provisioned range still takes writes.
    let n = 16;
    for (; n < 64; n++) {
      const e = await op({ type: CMD.WRITE, offset: n * B, payload: pattern(B, n) });
      if (e !== 0) {
        expect(e).toBe(ERR.ENOSPC);
        break;
      }
    }
    expect(n).toBeLessThan(64);
    expect(await op({ type: CMD.WRITE, offset: 8 * B, payload: pattern(B, 30) })).toBe(0);
    expect(await op({ type: CMD.WRITE, offset: 12 * B + 1024, payload: pattern(512, 31) })).toBe(0);
    expect(await op({ type: CMD.WRITE_ZEROES, offset: 9 * B + 512, length: 512 })).toBe(0); // never ENOTSUP without FAST_ZERO
    const got = await structuredRead(d, 8 * B, 5 * B);
    expect(got.subarray(0, B).equals(pattern(B, 30))).toBe(true);
    expect(uniform(got.subarray(B, 4 * B + 1024), 0)).toBe(true);
    expect(got.subarray(4 * B + 1024, 4 * B + 1536).equals(pattern(512, 31))).toBe(true);
    expect(uniform(got.subarray(4 * B + 1536), 0)).toBe(true);
  });
});
