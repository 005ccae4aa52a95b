// Extended headers (NBD_OPT_EXTENDED_HEADERS): 32-byte requests, and 32-byte extended replies for
// every command, each echoing the cookie and the request's offset (extension-ext-header: the
// reply's offset "MUST match the offset of the client's request").
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import type { TestClient } from '../support/test-client.ts';
import { startServer, TRANSPORTS, type TestServer } from '../support/server-fixture.ts';
import {
  be32,
  be64,
  CHUNK,
  CMD,
  DONE,
  ERR,
  extRequest,
  FLAG,
  parseBlockStatus,
  parseErrorPayload,
  pattern,
  TX,
  W,
  type Chunk,
} from '../support/wire.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 4 * MiB;

describe.each(TRANSPORTS)('extended headers over %s', (transport) => {
  let t: TestServer;
  let c: TestClient;
  let contextId: number;

  beforeEach(async () => {
    t = await startServer(
      [
        { name: 'disk', device: new MemoryDevice({ size: SIZE, pageSize: 4096 }) },
        { name: 'ro', device: new MemoryDevice({ size: 1 * MiB, readOnly: true }) },
      ],
      transport,
    );
    c = await t.connect();
    const n = await c.negotiate({ name: 'disk', extended: true, meta: ['base:allocation'] });
    expect(n.flags & TX.SEND_DF).toBe(TX.SEND_DF);
    contextId = n.contextIds.get('base:allocation')!;
    expect(contextId).toBeGreaterThan(0);
  });
  afterEach(async () => {
    await t.stop();
  });

  /** The single chunk of a reply, checked for the 32-byte extended framing. */
  async function only(cookie: bigint, offset: bigint | number): Promise<Chunk> {
    const chunks = await c.chunks();
    expect(chunks).toHaveLength(1);
    const ch = chunks[0]!;
    expect(ch.cookie).toBe(cookie);
    expect(ch.offset).toBe(BigInt(offset));
    expect(ch.flags & DONE).toBe(DONE);
    return ch;
  }

  it('WRITE|PAYLOAD_LEN: a NONE chunk with DONE, 32-byte header, offset echoed', async () => {
    c.send({ type: CMD.WRITE, flags: FLAG.PAYLOAD_LEN, cookie: 0xdeadbeef00000001n, offset: 8192, payload: pattern(4096, 1) });
    const head = await c.peek(32);
    expect(be32(head, 0)).toBe(W.EXTENDED_REPLY_MAGIC);
    expect(be64(head, 24)).toBe(0n);
    const ch = await only(0xdeadbeef00000001n, 8192);
    expect([ch.type, ch.payload.length]).toEqual([CHUNK.NONE, 0]);
  });

  it('READ: OFFSET_DATA with the data; header length is 8 + data', async () => {
    c.send({ type: CMD.WRITE, flags: FLAG.PAYLOAD_LEN, cookie: 1n, offset: 8192, payload: pattern(8192, 2) });
    await only(1n, 8192);
    c.send({ type: CMD.READ, cookie: 2n, offset: 8192, length: 8192 });
    const ch = await only(2n, 8192);
    expect(ch.type).toBe(CHUNK.OFFSET_DATA);
    expect(ch.payload.length).toBe(8 + 8192);
    expect(be64(ch.payload, 0)).toBe(8192n);
    expect(ch.payload.subarray(8).equals(pattern(8192, 2))).toBe(true);
  });

  it('a sparse READ: hole and data chunks, each with a 32-byte header echoing the request offset', async () => {
    c.send({ type: CMD.WRITE, flags: FLAG.PAYLOAD_LEN, cookie: 1n, offset: 16384, payload: pattern(4096, 3) });
    await only(1n, 16384);
    c.send({ type: CMD.READ, cookie: 2n, offset: 8192, length: 16384 });
    const chunks = await c.chunks();
    expect(chunks.map((x) => x.type).sort()).toEqual([CHUNK.OFFSET_DATA, CHUNK.OFFSET_HOLE, CHUNK.OFFSET_HOLE]);
    for (const ch of chunks) expect([ch.cookie, ch.offset]).toEqual([2n, 8192n]);
    const data = chunks.find((x) => x.type === CHUNK.OFFSET_DATA)!;
    expect(be64(data.payload, 0)).toBe(16384n);
    expect(data.payload.subarray(8).equals(pattern(4096, 3))).toBe(true);
  });

  it('FLUSH, TRIM, WRITE_ZEROES and CACHE: NONE chunks', async () => {
    const cases: Array<[number, number, number]> = [
      [CMD.FLUSH, 0, 0],
      [CMD.TRIM, 4096, 4096],
      [CMD.WRITE_ZEROES, 8192, 4096],
      [CMD.CACHE, 0, 65536],
    ];
    for (const [i, [type, offset, length]] of cases.entries()) {
      c.send({ type, cookie: BigInt(10 + i), offset, length });
      const ch = await only(BigInt(10 + i), offset);
      expect([ch.type, ch.payload.length]).toEqual([CHUNK.NONE, 0]);
    }
  });

  it('errors: ERROR chunks with the errno, offset echoed', async () => {
    c.send({ type: CMD.READ, cookie: 1n, offset: SIZE, length: 4096 });
    const e1 = await only(1n, SIZE);
    expect(e1.type === CHUNK.ERROR || e1.type === CHUNK.ERROR_OFFSET).toBe(true);
    expect(parseErrorPayload(e1).error).toBe(ERR.EINVAL);

    c.send({ type: CMD.WRITE, flags: FLAG.PAYLOAD_LEN, cookie: 2n, offset: SIZE - 512, payload: Buffer.alloc(1024) });
    expect(parseErrorPayload(await only(2n, SIZE - 512)).error).toBe(ERR.ENOSPC);

    c.send({ type: CMD.READ, cookie: 3n, offset: 0, length: 4096, flags: FLAG.REQ_ONE });
    expect(parseErrorPayload(await only(3n, 0)).error).toBe(ERR.EINVAL);
  });

  it('a payload on a command that takes none is drained, then refused; the stream stays in step', async () => {
    const decoy = extRequest({ type: CMD.FLUSH, cookie: 0x666n });
    c.write(extRequest({ type: CMD.TRIM, flags: FLAG.PAYLOAD_LEN, cookie: 1n, offset: 0, length: decoy.length, payload: decoy }));
    expect(parseErrorPayload(await only(1n, 0)).error).toBe(ERR.EINVAL);
    c.send({ type: CMD.READ, cookie: 2n, offset: 0, length: 512 });
    expect((await only(2n, 0)).type).toBe(CHUNK.OFFSET_HOLE);
    await c.expectSilence(30);
  });

  it('a compact 28-byte request after extended headers is a bad magic: disconnect', async () => {
    const compact = Buffer.alloc(28);
    compact.writeUInt32BE(W.REQUEST_MAGIC, 0);
    compact.writeUInt16BE(CMD.FLUSH, 6);
    c.write(compact);
    expect((await c.expectClose()).length).toBe(0);
  });

  it('BLOCK_STATUS_EXT (type 6) with 64-bit extents, with and without REQ_ONE', async () => {
    c.send({ type: CMD.WRITE, flags: FLAG.PAYLOAD_LEN, cookie: 1n, offset: 4096, payload: pattern(4096, 5) });
    await only(1n, 4096);
    c.send({ type: CMD.BLOCK_STATUS, cookie: 2n, offset: 0, length: 16384 });
    const ch = await only(2n, 0);
    expect(ch.type).toBe(CHUNK.BLOCK_STATUS_EXT);
    const s = parseBlockStatus(ch);
    expect(s.id).toBe(contextId);
    expect(s.extents).toEqual([
      { length: 4096n, flags: 3n },
      { length: 4096n, flags: 0n },
      { length: 8192n, flags: 3n },
    ]);
    c.send({ type: CMD.BLOCK_STATUS, flags: FLAG.REQ_ONE, cookie: 3n, offset: 4096, length: 16384 });
    expect(parseBlockStatus(await only(3n, 4096)).extents).toEqual([{ length: 4096n, flags: 0n }]);
  });

  it('BLOCK_STATUS with a 64-bit effect length over the whole export', async () => {
    c.send({ type: CMD.BLOCK_STATUS, cookie: 4n, offset: 0, length: BigInt(SIZE) });
    const s = parseBlockStatus(await only(4n, 0));
    expect(s.extents).toEqual([{ length: BigInt(SIZE), flags: 3n }]);
  });

  it('zero-length requests get a NONE chunk that still echoes the request offset', async () => {
    c.send({ type: CMD.READ, cookie: 1n, offset: 4096, length: 0 });
    const r = await only(1n, 4096);
    expect(r.type).toBe(CHUNK.NONE);
    c.send({ type: CMD.WRITE, flags: FLAG.PAYLOAD_LEN, cookie: 2n, offset: 8192, length: 0 });
    expect((await only(2n, 8192)).type).toBe(CHUNK.NONE);
  });

  it('cookies keep all 64 bits in extended replies', async () => {
    for (const cookie of [0xffffffffffffffffn, 0x8000000000000001n]) {
      c.send({ type: CMD.READ, cookie, offset: 0, length: 512 });
      await only(cookie, 0);
    }
  });

  it('on a read-only export: WRITE, TRIM, WRITE_ZEROES get EPERM, the WRITE payload drained', async () => {
    const r = await t.connect();
    await r.negotiate({ name: 'ro', extended: true });
    r.send({ type: CMD.WRITE, flags: FLAG.PAYLOAD_LEN, cookie: 1n, offset: 0, payload: Buffer.alloc(4096, 0x21) });
    r.send({ type: CMD.TRIM, cookie: 2n, offset: 0, length: 4096 });
    r.send({ type: CMD.WRITE_ZEROES, cookie: 3n, offset: 0, length: 4096 });
    r.send({ type: CMD.READ, cookie: 4n, offset: 0, length: 4096 });
    const byCookie = new Map<bigint, Chunk[]>();
    for (let i = 0; i < 4; i++) {
      const chunks = await r.chunks();
      byCookie.set(chunks[0]!.cookie, chunks);
    }
    for (const k of [1n, 2n, 3n]) expect(parseErrorPayload(byCookie.get(k)![0]!).error).toBe(ERR.EPERM);
    expect(byCookie.get(4n)![0]!.type).not.toBe(CHUNK.ERROR);
  });
});
