// How connections end and how they behave under pressure: DISC with requests in flight, a client
// half-closing, server shutdown, a client that never reads its replies, and clients that vanish.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import { Limits } from '../../src/server/limits.ts';
import { TestClient } from '../support/test-client.ts';
import { startServer, TRANSPORTS, type TestServer } from '../support/server-fixture.ts';
import { Gate, InstrumentedDevice, sleep, until } from '../support/test-devices.ts';
import { clientFlags, CMD, infoData, OPT, option, pattern, request } from '../support/wire.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 64 * MiB;

describe.each(TRANSPORTS)('connection lifecycle over %s', (transport) => {
  let t: TestServer;
  let dev: InstrumentedDevice;

  beforeEach(async () => {
    dev = new InstrumentedDevice(new MemoryDevice({ size: SIZE }));
    t = await startServer([{ name: 'disk', device: dev }], transport);
  });
  afterEach(async () => {
    await t.stop();
  });

  async function client(): Promise<TestClient> {
    const c = await t.connect();
    await c.negotiate({ name: 'disk' });
    return c;
  }

  /** Holds every device read until the returned gate opens. */
  function holdReads(): Gate {
    const gate = new Gate();
    dev.hook = async (op) => {
      if (op === 'read') await gate.wait;
    };
    return gate;
  }

  describe('DISC', () => {
    it('requests in flight at DISC are all answered before the close; DISC itself gets no reply', async () => {
      const gate = holdReads();
      const c = await client();
      const batch: Buffer[] = [];
      for (let i = 0; i < 4; i++) batch.push(request({ type: CMD.READ, cookie: BigInt(i + 1), offset: i * 4096, length: 4096 }));
      batch.push(request({ type: CMD.WRITE, cookie: 5n, offset: 1 * MiB, payload: pattern(4096, 1) }));
      batch.push(request({ type: CMD.DISC, cookie: 0n }));
      // After DISC the server reads no more requests: this one must not be answered.
      batch.push(request({ type: CMD.FLUSH, cookie: 6n }));
      c.write(Buffer.concat(batch));
      await until(() => dev.calls.read === 4, 3000, 'four reads in flight');
      expect(c.closed).toBe(false);
      gate.open();
      const seen = new Set<bigint>();
      for (let i = 0; i < 5; i++) {
        const r = await c.simpleReply((k) => (k === 5n ? 0 : 4096));
        expect(r.error).toBe(0);
        seen.add(r.cookie);
      }
      expect([...seen].sort()).toEqual([1n, 2n, 3n, 4n, 5n]);
      expect((await c.expectClose()).length).toBe(0);
      expect(dev.calls.flush).toBe(0);
    });

    it('DISC with nothing in flight closes at once', async () => {
      const c = await client();
      expect((await c.disconnect()).length).toBe(0);
    });

    it('DISC then a half-close (as libnbd shuts its write side): in-flight replies still arrive', async () => {
      const gate = holdReads();
      const c = await client();
      c.send({ type: CMD.READ, cookie: 1n, offset: 0, length: 4096 });
      c.send({ type: CMD.DISC });
      await until(() => dev.calls.read === 1, 3000, 'the read in flight');
      c.socket.end();
      await sleep(50);
      gate.open();
      const r = await c.simpleReply(4096);
      expect([r.cookie, r.error]).toEqual([1n, 0]);
      expect((await c.expectClose()).length).toBe(0);
    });
  });

  describe('shutdown()', () => {
    it('lets in-flight requests finish, then closes connections and resolves', async () => {
      const gate = holdReads();
      const c = await client();
      const negotiating = await t.connect();
      await negotiating.start();
      for (let i = 0; i < 3; i++) c.send({ type: CMD.READ, cookie: BigInt(i + 1), offset: i * 4096, length: 4096 });
      await until(() => dev.calls.read === 3, 3000, 'three reads in flight');

      let resolved = false;
      const done = t.server.shutdown(5000).then(() => (resolved = true));
      // A client waiting between options is closed; the busy one waits for its replies.
      expect((await negotiating.expectClose()).length).toBe(0);
      await sleep(50);
      expect(resolved).toBe(false);
      expect(c.closed).toBe(false);

      gate.open();
      const seen: bigint[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await c.simpleReply(4096);
        expect(r.error).toBe(0);
        seen.push(r.cookie);
      }
      expect(seen.sort()).toEqual([1n, 2n, 3n]);
      expect((await c.expectClose()).length).toBe(0);
      const started = Date.now();
      await Promise.race([done, sleep(3000)]);
      expect(resolved).toBe(true);
      expect(Date.now() - started).toBeLessThan(3000);
      expect(t.server.connectionCount).toBe(0);
      // The listener is gone.
      await expect(TestClient.connect(t.target, 1000)).rejects.toThrow();
    });

    it('a client in the middle of negotiating gets ERR_SHUTDOWN for its next option', async () => {
      const c = await t.connect();
      await c.greeting();
      // Flags and a partial option header are queued, so the connection is not idle.
      c.write(Buffer.concat([clientFlags(3), option(OPT.INFO, infoData('disk')).subarray(0, 8)]));
      await sleep(30);
      const done = t.server.shutdown(2000);
      c.write(option(OPT.INFO, infoData('disk')).subarray(8));
      const reply = await c.optionReply();
      expect(reply.type).toBe(0x80000007);
      c.destroy();
      await done;
    });

    it('with no connections resolves promptly, and twice', async () => {
      const started = Date.now();
      await t.server.shutdown(5000);
      await t.server.shutdown(5000);
      expect(Date.now() - started).toBeLessThan(1000);
    });
  });

  describe('backpressure', () => {
    it('a client that sends many READs and never reads replies makes the server stop', async () => {
      const c = await client();
      c.socket.pause(); // never read: replies pile up in the kernel and then in the server
      const readSize = 4 * MiB;
      const header = request({ type: CMD.READ, cookie: 1n, offset: 0, length: readSize });
      const batch = Buffer.concat(Array.from({ length: 37449 }, () => header)); // ~1 MiB of READ headers
      const memoryBefore = process.memoryUsage().rss;

      // Keep sending until the socket stalls. A server that kept reading would buffer every
      // request byte; one that stops reading lets the kernel buffers fill and our writes stall.
      // Stalled means: bytes wait in our own socket buffer and none of them leave for 500 ms.
      const LIMIT = 160 * MiB;
      let sent = 0;
      let stalled = false;
      while (sent < LIMIT) {
        if (c.socket.writableLength > 4 * MiB) {
          const waiting = c.socket.writableLength;
          await sleep(500);
          if (c.socket.writableLength >= waiting) {
            stalled = true;
            break;
          }
          continue;
        }
        c.write(batch);
        sent += batch.length;
        await new Promise((r) => setImmediate(r));
      }
      expect(stalled, `the server kept reading: ${(sent / MiB).toFixed(0)} MiB of requests accepted`).toBe(true);
      await sleep(200);
      // Dispatched reads are bounded by the bytes allowed in flight plus the replies allowed to
      // queue, plus what the kernel's socket buffers absorbed (generous: 48 MiB): about 80 reads
      // of 4 MiB, never the thousands that were sent. Without a byte budget for READ buffers,
      // 256 in-flight reads (1 GiB) were seen.
      const budget = Limits.maxInFlightBytesPerConnection + Limits.maxQueuedReplyBytes;
      const dispatched = dev.calls.read;
      expect(dispatched).toBeGreaterThan(0);
      expect(dispatched).toBeLessThanOrEqual(Math.ceil((budget + 48 * MiB) / readSize) + 1);
      const grown = process.memoryUsage().rss - memoryBefore;
      expect(grown, `rss grew by ${(grown / MiB).toFixed(0)} MiB`).toBeLessThan(budget + 256 * MiB);
      await sleep(200);
      expect(dev.calls.read).toBe(dispatched);

      // Dropping the client frees the connection; the server keeps serving others.
      c.destroy();
      await until(() => t.server.connectionCount === 0, 5000, 'the stalled connection to close');
      const d = await client();
      d.send({ type: CMD.READ, cookie: 2n, offset: 0, length: 4096 });
      expect((await d.simpleReply(4096)).error).toBe(0);
    });

    it('a client that sends many options and never reads the replies makes the server stop', async () => {
      // LIST replies are ~70 times larger than the 16-byte option: unbounded, this is amplification.
      const s = await startServer([{ name: 'big', description: 'd'.repeat(1000), device: new MemoryDevice({ size: MiB }) }], transport);
      try {
        const c = await s.connect();
        await c.start();
        c.socket.pause();
        const batch = Buffer.concat(Array.from({ length: 65536 }, () => option(OPT.LIST))); // 1 MiB of LISTs
        const rssBefore = process.memoryUsage().rss;
        const LIMIT = 32 * MiB;
        let sent = 0;
        let stalled = false;
        while (sent < LIMIT) {
          // A regression would queue replies without end: stop before that hurts the machine.
          expect(process.memoryUsage().rss - rssBefore, 'replies are piling up in the server').toBeLessThan(1024 * MiB);
          if (c.socket.writableLength > 4 * MiB) {
            // Two quiet windows: a server slowed down by the replies it writes is not a stopped one.
            const waiting = c.socket.writableLength;
            await sleep(500);
            if (c.socket.writableLength >= waiting) {
              await sleep(1000);
              if (c.socket.writableLength >= waiting) {
                stalled = true;
                break;
              }
            }
            continue;
          }
          c.write(batch);
          sent += batch.length;
          await new Promise((r) => setImmediate(r));
        }
        const grown = process.memoryUsage().rss - rssBefore;
        expect(stalled, `the server kept reading: ${(sent / MiB).toFixed(0)} MiB of options accepted`).toBe(true);
        // Queued replies are bounded by maxQueuedReplyBytes (64 MiB); the slack covers per-buffer
        // overhead of many small replies and our own send buffers (about 240 MiB seen in all).
        expect(grown, `rss grew by ${(grown / MiB).toFixed(0)} MiB`).toBeLessThan(Limits.maxQueuedReplyBytes + 384 * MiB);
        c.destroy();
        await until(() => s.server.connectionCount === 0, 5000, 'the stalled connection to close');
        const d = await s.connect();
        await d.start();
        expect((await d.go('big')).size).toBe(BigInt(MiB));
      } finally {
        await s.stop();
      }
    });

    it('a slow reader gets every reply, in full, once it reads again', async () => {
      const c = await client();
      c.socket.pause();
      const n = 48;
      for (let i = 0; i < n; i++) c.send({ type: CMD.READ, cookie: BigInt(i), offset: 0, length: 2 * MiB });
      await sleep(300);
      c.socket.resume();
      const seen = new Set<bigint>();
      for (let i = 0; i < n; i++) {
        const r = await c.simpleReply(2 * MiB, 10_000);
        expect(r.error).toBe(0);
        seen.add(r.cookie);
      }
      expect(seen.size).toBe(n);
      await c.expectSilence(50);
    });
  });

  describe('clients that vanish', () => {
    it.each([
      ['mid option data', (c: TestClient) => c.write(option(OPT.GO, infoData('disk')).subarray(0, 20)), false],
      ['mid request header', (c: TestClient) => c.write(request({ type: CMD.READ, length: 4096 }).subarray(0, 13)), true],
      ['mid WRITE payload', (c: TestClient) => c.write(request({ type: CMD.WRITE, length: 1 * MiB }).subarray(0, 28 + 4096)), true],
      ['with a READ in flight', (c: TestClient) => c.send({ type: CMD.READ, cookie: 1n, offset: 0, length: 1 * MiB }), true],
    ] as const)('%s: harmless', async (_name, act, negotiated) => {
      const gate = holdReads();
      const c = await t.connect();
      if (negotiated) await c.negotiate({ name: 'disk' });
      else await c.start();
      act(c);
      await sleep(20);
      c.destroy();
      await sleep(20);
      gate.open();
      await until(() => t.server.connectionCount === 0, 3000, 'the connection to be dropped');
      expect(dev.calls.write).toBe(0);
      dev.hook = undefined;
      const d = await client();
      d.send({ type: CMD.READ, cookie: 2n, offset: 0, length: 4096 });
      expect((await d.simpleReply(4096)).error).toBe(0);
    });

    it('many clients vanishing with writes in flight leave the server serving', async () => {
      const gate = new Gate();
      dev.hook = async (op) => {
        if (op === 'write') await gate.wait;
      };
      for (let i = 0; i < 8; i++) {
        const c = await client();
        for (let j = 0; j < 4; j++) c.send({ type: CMD.WRITE, cookie: BigInt(j), offset: (i * 4 + j) * 4096, payload: pattern(4096, i) });
        await until(() => dev.active >= (i + 1) * 4, 3000, 'writes in flight');
        c.destroy();
      }
      gate.open();
      await until(() => dev.active === 0 && t.server.connectionCount === 0, 3000, 'everything to settle');
      const d = await client();
      d.send({ type: CMD.READ, cookie: 1n, offset: 0, length: 4096 });
      expect((await d.simpleReply(4096)).data.equals(pattern(4096, 0))).toBe(true);
    });
  });
});
