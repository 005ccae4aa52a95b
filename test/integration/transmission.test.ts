// Transmission over real sockets with simple and structured replies: framing that must stay in
// step (bad magic, drained WRITE payloads, error replies without data), cookies, pipelining with
// out-of-order completion, sparse structured READs, block status and read-only exports.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import { IomapdError } from '../../src/util/errors.ts';
import type { TestClient } from '../support/test-client.ts';
import { startServer, TRANSPORTS, type TestServer } from '../support/server-fixture.ts';
import { Gate, InstrumentedDevice, sleep, until } from '../support/test-devices.ts';
import {
  be32,
  be64,
  CHUNK,
  CMD,
  DONE,
  ERR,
  FLAG,
  metaData,
  OPT,
  parseBlockStatus,
  parseErrorPayload,
  pattern,
  REP,
  request,
  TX,
  type Chunk,
} from '../support/wire.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 8 * MiB;
const RO_SIZE = 1 * MiB;

describe.each(TRANSPORTS)('transmission over %s', (transport) => {
  let t: TestServer;
  let dev: InstrumentedDevice;

  beforeEach(async () => {
    // 4 KiB pages, so holes and data alternate at a fine grain.
    dev = new InstrumentedDevice(new MemoryDevice({ size: SIZE, pageSize: 4096 }));
    const ro = new MemoryDevice({ size: RO_SIZE, readOnly: true });
    t = await startServer(
      [
        { name: 'disk', device: dev },
        { name: 'ro', device: ro },
      ],
      transport,
    );
  });
  afterEach(async () => {
    await t.stop();
  });

  async function simpleClient(name = 'disk'): Promise<TestClient> {
    const c = await t.connect();
    await c.negotiate({ name });
    return c;
  }

  async function write(c: TestClient, offset: number, data: Buffer, cookie = 100n): Promise<void> {
    c.send({ type: CMD.WRITE, cookie, offset, payload: data });
    const r = await c.simpleReply();
    expect([r.error, r.cookie]).toEqual([0, cookie]);
  }

  describe('framing', () => {
    it.each([
      ['a random magic', 0x12345678],
      ['the reserved 0x25609514', 0x25609514],
      ['the simple reply magic', 0x67446698],
      ['the extended request magic without extended headers', 0x21e41c71],
    ])('a request with %s disconnects', async (_name, magic) => {
      const c = await simpleClient();
      c.write(request({ magic, type: CMD.READ, cookie: 1n, offset: 0, length: 512 }));
      expect((await c.expectClose()).length).toBe(0);
    });

    it('bad magic after good requests: nothing after it is parsed; the connection closes', async () => {
      const c = await simpleClient();
      c.send({ type: CMD.FLUSH, cookie: 1n });
      expect(await c.simpleReply()).toMatchObject({ cookie: 1n, error: 0 });
      // A bad header followed by a valid request: the stream cannot be resynchronised, so the
      // valid-looking bytes after it must not be answered.
      c.write(Buffer.concat([request({ magic: 0, type: CMD.READ, cookie: 2n, length: 512 }), request({ type: CMD.FLUSH, cookie: 3n })]));
      expect((await c.expectClose()).length).toBe(0);
    });

    it.each([
      ['misaligned (EINVAL)', 'disk', 100, 4096, ERR.EINVAL],
      ['past the end (ENOSPC)', 'disk', SIZE - 512, 4096, ERR.ENOSPC],
      ['on a read-only export (EPERM)', 'ro', 0, 4096, ERR.EPERM],
      ['with 1 byte (EINVAL)', 'disk', 0, 1, ERR.EINVAL],
    ])('a rejected WRITE %s has its payload drained; the next request succeeds', async (_name, exportName, offset, length, errno) => {
      const c = await simpleClient(exportName);
      // A payload that is itself a valid request: parsed as one if it were not drained.
      const decoy = Buffer.alloc(length);
      request({ type: CMD.FLUSH, cookie: 0x666n }).copy(decoy, 0);
      c.send({ type: CMD.WRITE, cookie: 1n, offset, payload: decoy });
      c.send({ type: CMD.READ, cookie: 2n, offset: 0, length: 512 });
      const r1 = await c.simpleReply();
      expect([r1.cookie, r1.error]).toEqual([1n, errno]);
      const r2 = await c.simpleReply(512);
      expect([r2.cookie, r2.error]).toEqual([2n, 0]);
      await c.expectSilence(50);
      expect(dev.calls.write).toBe(0);
    });

    it('a rejected WRITE payload trickling in over many packets is drained too', async () => {
      const c = await simpleClient('ro');
      const payload = Buffer.alloc(256 * KiB, 0x25);
      c.write(request({ type: CMD.WRITE, cookie: 1n, offset: 0, length: payload.length }));
      for (let at = 0; at < payload.length; at += 32 * KiB) {
        c.write(payload.subarray(at, at + 32 * KiB));
        await sleep(2);
      }
      c.send({ type: CMD.READ, cookie: 2n, offset: 0, length: 4096 });
      expect((await c.simpleReply()).error).toBe(ERR.EPERM);
      expect((await c.simpleReply(4096)).error).toBe(0);
    });

    it('a WRITE payload over 64 MiB disconnects instead of draining', async () => {
      const c = await simpleClient('ro');
      c.write(request({ type: CMD.WRITE, cookie: 1n, offset: 0, length: 64 * MiB + 512 }));
      expect((await c.expectClose()).length).toBe(0);
    });

    it('a simple READ error has no payload: the next reply follows at once', async () => {
      dev.hook = (op, offset) => {
        if (op === 'read' && offset === 1 * MiB) throw new IomapdError('IO', 'injected read failure');
      };
      const c = await simpleClient();
      c.send({ type: CMD.READ, cookie: 1n, offset: 1 * MiB, length: 64 * KiB });
      const r1 = await c.simpleReply(64 * KiB);
      expect([r1.cookie, r1.error, r1.data.length]).toEqual([1n, ERR.EIO, 0]);
      c.send({ type: CMD.READ, cookie: 2n, offset: SIZE, length: 4096 });
      const r2 = await c.simpleReply(4096);
      expect([r2.cookie, r2.error, r2.data.length]).toEqual([2n, ERR.EINVAL, 0]);
      c.send({ type: CMD.READ, cookie: 3n, offset: 0, length: 4096 });
      const r3 = await c.simpleReply(4096);
      expect([r3.cookie, r3.error, r3.data.length]).toEqual([3n, 0, 4096]);
      await c.expectSilence(30);
    });

    it('a device error that is not an IomapdError becomes EIO and the connection lives on', async () => {
      dev.hook = (op) => {
        if (op === 'flush') throw new Error('unexpected');
      };
      const c = await simpleClient();
      c.send({ type: CMD.FLUSH, cookie: 1n });
      expect((await c.simpleReply()).error).toBe(ERR.EIO);
      dev.hook = undefined;
      c.send({ type: CMD.FLUSH, cookie: 2n });
      expect((await c.simpleReply()).error).toBe(0);
    });

    it.each([
      ['unknown command 9', { type: 9, offset: 0, length: 512 }],
      ['READ|NO_HOLE', { type: CMD.READ, flags: FLAG.NO_HOLE, offset: 0, length: 512 }],
      ['READ|DF without structured replies', { type: CMD.READ, flags: FLAG.DF, offset: 0, length: 512 }],
      ['BLOCK_STATUS without a meta context', { type: CMD.BLOCK_STATUS, offset: 0, length: 512 }],
      ['misaligned TRIM', { type: CMD.TRIM, offset: 1, length: 512 }],
      ['READ at 2^64 - 512', { type: CMD.READ, offset: (1n << 64n) - 512n, length: 512 }],
    ])('%s: EINVAL, no payload, connection continues', async (_name, fields) => {
      const c = await simpleClient();
      c.send({ ...fields, cookie: 7n });
      const r = await c.simpleReply(512);
      expect([r.cookie, r.error, r.data.length]).toEqual([7n, ERR.EINVAL, 0]);
      c.send({ type: CMD.FLUSH, cookie: 8n });
      expect(await c.simpleReply()).toMatchObject({ cookie: 8n, error: 0 });
    });

    it('zero-length READ, WRITE, TRIM and WRITE_ZEROES succeed with no payload', async () => {
      const c = await simpleClient();
      for (const [i, type] of [CMD.READ, CMD.WRITE, CMD.TRIM, CMD.WRITE_ZEROES, CMD.CACHE].entries()) {
        c.send({ type, cookie: BigInt(i), offset: 4096, length: 0 });
        expect(await c.simpleReply()).toMatchObject({ cookie: BigInt(i), error: 0 });
      }
      await c.expectSilence(30);
    });
  });

  describe('cookies', () => {
    it.each([0xdeadbeef00000001n, 0xffffffffffffffffn, 0x8000000000000000n, 0n, 0x0000000100000000n])(
      'cookie 0x%s is echoed exactly (success and error, simple and structured)',
      async (cookie) => {
        const s = await simpleClient();
        s.send({ type: CMD.READ, cookie, offset: 0, length: 512 });
        expect((await s.simpleReply(512)).cookie).toBe(cookie);
        s.send({ type: CMD.READ, cookie, offset: SIZE, length: 512 });
        expect(await s.simpleReply()).toMatchObject({ cookie, error: ERR.EINVAL });
        s.send({ type: CMD.WRITE, cookie, offset: 0, payload: Buffer.alloc(512) });
        expect(await s.simpleReply()).toMatchObject({ cookie, error: 0 });

        const st = await t.connect();
        await st.negotiate({ name: 'disk', structured: true });
        st.send({ type: CMD.READ, cookie, offset: 0, length: 512 });
        for (const c of await st.chunks()) expect(c.cookie).toBe(cookie);
        st.send({ type: CMD.READ, cookie, offset: SIZE, length: 512 });
        for (const c of await st.chunks()) expect(c.cookie).toBe(cookie);
      },
    );

    it('duplicate cookies are answered once per request, not once per cookie', async () => {
      const c = await simpleClient();
      for (let i = 0; i < 4; i++) c.send({ type: CMD.READ, cookie: 0x42n, offset: i * 4096, length: 4096 });
      for (let i = 0; i < 4; i++) expect(await c.simpleReply(4096)).toMatchObject({ cookie: 0x42n, error: 0 });
      await c.expectSilence(50);
    });
  });

  describe('pipelining', () => {
    it('pipelined requests are each answered exactly once, in completion order', async () => {
      const gate = new Gate();
      dev.hook = async (op, offset) => {
        if (op === 'read' && offset === 0) await gate.wait;
      };
      const c = await simpleClient();
      const lengths = new Map<bigint, number>();
      const sent: bigint[] = [];
      const batch: Buffer[] = [];
      for (let i = 0; i < 32; i++) {
        const cookie = 0xc0de000000000000n + BigInt(i);
        sent.push(cookie);
        if (i % 4 === 3) {
          batch.push(request({ type: CMD.WRITE, cookie, offset: 1 * MiB + i * 4096, payload: pattern(4096, i) }));
          lengths.set(cookie, 0);
        } else {
          batch.push(request({ type: CMD.READ, cookie, offset: i * 4096, length: 4096 }));
          lengths.set(cookie, 4096);
        }
      }
      batch.push(request({ type: CMD.FLUSH, cookie: 0xf1n }));
      sent.push(0xf1n);
      lengths.set(0xf1n, 0);
      c.write(Buffer.concat(batch)); // one write: the server sees them all at once

      const seen: bigint[] = [];
      for (let i = 0; i < sent.length - 1; i++) {
        const r = await c.simpleReply((k) => lengths.get(k)!);
        expect(r.error).toBe(0);
        seen.push(r.cookie);
      }
      // The read held at offset 0 (cookie ...00, sent first) has not been answered yet.
      expect(seen).not.toContain(sent[0]);
      gate.open();
      const last = await c.simpleReply((k) => lengths.get(k)!);
      seen.push(last.cookie);
      expect(last.cookie).toBe(sent[0]);
      expect([...seen].sort()).toEqual([...sent].sort());
      expect(new Set(seen).size).toBe(sent.length);
      expect(await c.disconnect()).toHaveLength(0);
    });

    it('READ data in pipelined replies is not interleaved with other replies', async () => {
      const c = await simpleClient();
      for (let i = 0; i < 8; i++) await write(c, i * 64 * KiB, pattern(64 * KiB, i), BigInt(i));
      for (let i = 0; i < 8; i++) c.send({ type: CMD.READ, cookie: BigInt(i), offset: i * 64 * KiB, length: 64 * KiB });
      for (let i = 0; i < 8; i++) {
        const r = await c.simpleReply(64 * KiB);
        expect(r.data.equals(pattern(64 * KiB, Number(r.cookie)))).toBe(true);
      }
    });
  });

  describe('structured replies', () => {
    async function structuredClient(meta?: string[]): Promise<{ c: TestClient; flags: number; ids: Map<string, number> }> {
      const c = await t.connect();
      const n = await c.negotiate({ name: 'disk', structured: true, ...(meta ? { meta } : {}) });
      return { c, flags: n.flags, ids: n.contextIds };
    }

    /** Checks the content chunks of one READ reply and rebuilds the data they describe. */
    function assemble(chunks: Chunk[], offset: number, length: number): Buffer {
      expect(chunks.filter((c) => (c.flags & DONE) !== 0)).toHaveLength(1);
      expect(chunks.at(-1)!.flags & DONE).toBe(DONE);
      const out = Buffer.alloc(length, 0xee);
      const covered: Array<[number, number]> = [];
      for (const c of chunks) {
        if (c.type === CHUNK.NONE) {
          expect(c.payload.length).toBe(0);
          continue;
        }
        const at = Number(be64(c.payload, 0));
        if (c.type === CHUNK.OFFSET_DATA) {
          const data = c.payload.subarray(8);
          expect(data.length).toBeGreaterThan(0);
          data.copy(out, at - offset);
          covered.push([at, at + data.length]);
        } else if (c.type === CHUNK.OFFSET_HOLE) {
          expect(c.payload.length).toBe(12);
          const len = be32(c.payload, 8);
          expect(len).toBeGreaterThan(0);
          out.fill(0, at - offset, at - offset + len);
          covered.push([at, at + len]);
        } else {
          throw new Error(`unexpected chunk type ${c.type}`);
        }
      }
      // Inside the request, no overlap, and together exactly the whole request.
      covered.sort((a, b) => a[0] - b[0]);
      let pos = offset;
      for (const [from, to] of covered) {
        expect(from).toBe(pos);
        expect(to).toBeLessThanOrEqual(offset + length);
        pos = to;
      }
      expect(pos).toBe(offset + length);
      return out;
    }

    it('GO after STRUCTURED_REPLY advertises SEND_DF', async () => {
      const { flags } = await structuredClient();
      expect(flags & TX.SEND_DF).toBe(TX.SEND_DF);
    });

    it('a READ over a sparse range is OFFSET_HOLE and OFFSET_DATA chunks covering it exactly', async () => {
      const { c } = await structuredClient();
      c.send({ type: CMD.WRITE, cookie: 1n, offset: 8192, payload: pattern(4096, 1) });
      c.send({ type: CMD.WRITE, cookie: 2n, offset: 20480, payload: pattern(8192, 2) });
      for (let i = 0; i < 2; i++) expect((await c.reply()).error).toBe(0);
      c.send({ type: CMD.READ, cookie: 3n, offset: 4096, length: 32768 });
      const chunks = await c.chunks();
      expect(chunks.map((x) => x.type)).toContain(CHUNK.OFFSET_HOLE);
      expect(chunks.map((x) => x.type)).toContain(CHUNK.OFFSET_DATA);
      const expected = Buffer.alloc(32768);
      pattern(4096, 1).copy(expected, 8192 - 4096);
      pattern(8192, 2).copy(expected, 20480 - 4096);
      expect(assemble(chunks, 4096, 32768).equals(expected)).toBe(true);
    });

    it('a READ of an all-hole range, and of an all-data range', async () => {
      const { c } = await structuredClient();
      c.send({ type: CMD.READ, cookie: 1n, offset: 2 * MiB, length: 64 * KiB });
      expect(assemble(await c.chunks(), 2 * MiB, 64 * KiB).equals(Buffer.alloc(64 * KiB))).toBe(true);
      c.send({ type: CMD.WRITE, cookie: 2n, offset: 3 * MiB, payload: pattern(64 * KiB, 9) });
      expect((await c.reply()).error).toBe(0);
      c.send({ type: CMD.READ, cookie: 3n, offset: 3 * MiB, length: 64 * KiB });
      const chunks = await c.chunks();
      expect(assemble(chunks, 3 * MiB, 64 * KiB).equals(pattern(64 * KiB, 9))).toBe(true);
    });

    it('READ|DF gives a single OFFSET_DATA chunk with holes sent as zeroes', async () => {
      const { c } = await structuredClient();
      c.send({ type: CMD.WRITE, cookie: 1n, offset: 8192, payload: pattern(4096, 5) });
      expect((await c.reply()).error).toBe(0);
      c.send({ type: CMD.READ, flags: FLAG.DF, cookie: 2n, offset: 0, length: 64 * KiB });
      const chunks = await c.chunks();
      expect(chunks).toHaveLength(1);
      expect(chunks[0]!.type).toBe(CHUNK.OFFSET_DATA);
      expect(chunks[0]!.flags & DONE).toBe(DONE);
      expect(be64(chunks[0]!.payload, 0)).toBe(0n);
      const expected = Buffer.alloc(64 * KiB);
      pattern(4096, 5).copy(expected, 8192);
      expect(chunks[0]!.payload.subarray(8).equals(expected)).toBe(true);
    });

    it('READ errors are structured ERROR chunks with DONE, even for early (validation) errors', async () => {
      dev.hook = (op, offset) => {
        if (op === 'read' && offset === 1 * MiB) throw new IomapdError('IO', 'injected');
      };
      const { c } = await structuredClient();
      // Data, not a hole, at 1 MiB: a hole is answered from block status without a device read.
      c.send({ type: CMD.WRITE, cookie: 9n, offset: 1 * MiB, payload: pattern(4096, 4) });
      expect((await c.reply()).error).toBe(0);
      for (const [cookie, fields, errno] of [
        [1n, { offset: 1 * MiB, length: 4096 }, ERR.EIO],
        [2n, { offset: SIZE, length: 4096 }, ERR.EINVAL],
        [3n, { offset: 0, length: 4096, flags: FLAG.NO_HOLE }, ERR.EINVAL],
      ] as const) {
        c.send({ type: CMD.READ, cookie, ...fields });
        const chunks = await c.chunks();
        expect(chunks).toHaveLength(1);
        expect(chunks[0]!.type === CHUNK.ERROR || chunks[0]!.type === CHUNK.ERROR_OFFSET).toBe(true);
        expect(chunks[0]!.flags & DONE).toBe(DONE);
        expect(parseErrorPayload(chunks[0]!).error).toBe(errno);
      }
    });

    it('a zero-length READ is one chunk with DONE and no data', async () => {
      const { c } = await structuredClient();
      c.send({ type: CMD.READ, cookie: 1n, offset: 4096, length: 0 });
      const chunks = await c.chunks();
      expect(chunks).toHaveLength(1);
      expect(chunks[0]!.flags & DONE).toBe(DONE);
      expect(chunks[0]!.type === CHUNK.NONE || (chunks[0]!.type === CHUNK.OFFSET_DATA && chunks[0]!.payload.length === 8)).toBe(true);
    });

    it('BLOCK_STATUS for base:allocation, with and without REQ_ONE', async () => {
      const { c, ids } = await structuredClient(['base:allocation']);
      const id = ids.get('base:allocation')!;
      expect(id).toBeGreaterThan(0);
      c.send({ type: CMD.WRITE, cookie: 1n, offset: 8192, payload: pattern(4096, 3) });
      expect((await c.reply()).error).toBe(0);

      c.send({ type: CMD.BLOCK_STATUS, cookie: 2n, offset: 0, length: 32768 });
      const all = await c.chunks();
      expect(all).toHaveLength(1);
      expect(all[0]!.type).toBe(CHUNK.BLOCK_STATUS);
      const status = parseBlockStatus(all[0]!);
      expect(status.id).toBe(id);
      expect(status.extents).toEqual([
        { length: 8192n, flags: 3n },
        { length: 4096n, flags: 0n },
        { length: 20480n, flags: 3n },
      ]);

      c.send({ type: CMD.BLOCK_STATUS, flags: FLAG.REQ_ONE, cookie: 3n, offset: 0, length: 32768 });
      const one = parseBlockStatus((await c.chunks())[0]!);
      expect(one.extents).toHaveLength(1);
      expect(one.extents[0]).toEqual({ length: 8192n, flags: 3n });

      c.send({ type: CMD.BLOCK_STATUS, flags: FLAG.REQ_ONE, cookie: 4n, offset: 8192, length: 32768 });
      expect(parseBlockStatus((await c.chunks())[0]!).extents).toEqual([{ length: 4096n, flags: 0n }]);

      c.send({ type: CMD.BLOCK_STATUS, cookie: 5n, offset: SIZE, length: 4096 });
      expect(parseErrorPayload((await c.chunks())[0]!).error).toBe(ERR.EINVAL);
    });

    it('BLOCK_STATUS when SET_META_CONTEXT selected nothing: EINVAL', async () => {
      const { c } = await structuredClient(['base:']);
      c.send({ type: CMD.BLOCK_STATUS, cookie: 1n, offset: 0, length: 4096 });
      const chunks = await c.chunks();
      expect(chunks).toHaveLength(1);
      expect(parseErrorPayload(chunks[0]!).error).toBe(ERR.EINVAL);
    });

    it('a selection made for another export does not carry over to GO', async () => {
      const c = await t.connect();
      await c.start();
      expect((await c.opt(OPT.STRUCTURED_REPLY)).map((r) => r.type)).toEqual([REP.ACK]);
      expect((await c.opt(OPT.SET_META_CONTEXT, metaData('ro', ['base:allocation']))).map((r) => r.type)).toEqual([REP.META_CONTEXT, REP.ACK]);
      await c.go('disk');
      c.send({ type: CMD.BLOCK_STATUS, cookie: 1n, offset: 0, length: 4096 });
      expect(parseErrorPayload((await c.chunks())[0]!).error).toBe(ERR.EINVAL);
    });
  });

  describe('read-only export', () => {
    it('WRITE, TRIM and WRITE_ZEROES get EPERM (WRITE payload drained); READ and FLUSH work', async () => {
      const c = await simpleClient('ro');
      c.send({ type: CMD.WRITE, cookie: 1n, offset: 0, payload: Buffer.alloc(8192, 0x25) });
      c.send({ type: CMD.TRIM, cookie: 2n, offset: 0, length: 4096 });
      c.send({ type: CMD.WRITE_ZEROES, cookie: 3n, offset: 0, length: 4096 });
      c.send({ type: CMD.WRITE, flags: FLAG.FUA, cookie: 4n, offset: 4096, payload: Buffer.alloc(512, 0x13) });
      c.send({ type: CMD.READ, cookie: 5n, offset: 0, length: 4096 });
      c.send({ type: CMD.FLUSH, cookie: 6n });
      const replies = new Map<bigint, { error: number; data: Buffer }>();
      for (let i = 0; i < 6; i++) {
        const r = await c.simpleReply((k) => (k === 5n ? 4096 : 0));
        replies.set(r.cookie, r);
      }
      expect([...replies.entries()].map(([k, r]) => [k, r.error]).sort()).toEqual(
        [
          [1n, ERR.EPERM],
          [2n, ERR.EPERM],
          [3n, ERR.EPERM],
          [4n, ERR.EPERM],
          [5n, 0],
          [6n, 0],
        ].sort(),
      );
      expect(replies.get(5n)!.data.equals(Buffer.alloc(4096))).toBe(true);
      await c.expectSilence(30);
    });
  });

  it('a written block reads back; FUA reaches the device as FUA', async () => {
    const c = await simpleClient();
    c.send({ type: CMD.WRITE, flags: FLAG.FUA, cookie: 1n, offset: 12288, payload: pattern(4096, 7) });
    expect((await c.simpleReply()).error).toBe(0);
    expect(dev.fuaCalls).toBe(1);
    c.send({ type: CMD.READ, cookie: 2n, offset: 12288, length: 4096 });
    expect((await c.simpleReply(4096)).data.equals(pattern(4096, 7))).toBe(true);
    await until(() => dev.active === 0);
  });
});
