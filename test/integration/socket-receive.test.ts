// The connection reads its socket into buffers it chooses (src/server/socket-receive.ts): large
// WRITE payloads straight into their own buffer, everything else into slabs whose views are never
// overwritten. These feed payloads split at awkward places and check every byte lands.
import { Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import { ReceiveSlab, adoptWithUserBuffers } from '../../src/server/socket-receive.ts';
import { startServer, TRANSPORTS, type TestServer } from '../support/server-fixture.ts';
import { CMD, pattern, request } from '../support/wire.ts';

const MiB = 1024 * 1024;

describe.each(TRANSPORTS)('socket receive over %s', (transport) => {
  let t: TestServer;
  let dev: MemoryDevice;

  beforeEach(async () => {
    dev = new MemoryDevice({ size: 8 * MiB });
    t = await startServer([{ name: 'disk', device: dev }], transport);
  });
  afterEach(async () => {
    await t.stop();
  });

  it.each([
    ['a 1 MiB payload in one piece', MiB, [] as number[]],
    ['a 1 MiB payload split inside the header, just after it and at odd offsets', MiB, [7, 32, 33, 4096 + 3, 65_537, 700_001]],
    ['a 64 KiB payload (the direct threshold) split byte-wise at its start', 64 * 1024, [32, 33, 34, 35]],
    ['a 4 KiB payload (kept as views) split in many places', 4096, [1, 31, 32, 100, 2000, 4000]],
  ])('%s arrives intact, and requests after it stay in step', async (_name, size, cuts) => {
    const c = await t.connect();
    await c.negotiate({ name: 'disk' });
    const data = pattern(size, 11);
    const bytes = Buffer.concat([
      request({ type: CMD.WRITE, cookie: 1n, offset: MiB, payload: data }),
      request({ type: CMD.READ, cookie: 2n, offset: MiB, length: size }),
    ]);
    let at = 0;
    for (const cut of [...cuts, bytes.length]) {
      c.write(bytes.subarray(at, cut));
      at = cut;
      await new Promise((r) => setImmediate(r));
    }
    expect(await c.simpleReply()).toMatchObject({ cookie: 1n, error: 0 });
    const r = await c.simpleReply(size);
    expect(r).toMatchObject({ cookie: 2n, error: 0 });
    expect(r.data!.equals(data)).toBe(true);
  });

  it('after a large write, a small write and a flush in the same burst stay in step', async () => {
    const c = await t.connect();
    await c.negotiate({ name: 'disk' });
    const big = pattern(MiB, 40);
    const small = pattern(4096, 41);
    c.write(
      Buffer.concat([
        request({ type: CMD.WRITE, cookie: 1n, offset: 0, payload: big }),
        request({ type: CMD.WRITE, cookie: 2n, offset: 2 * MiB, payload: small }),
        request({ type: CMD.FLUSH, cookie: 3n }),
        request({ type: CMD.WRITE, cookie: 4n, offset: 3 * MiB, payload: big }),
      ]),
    );
    const cookies = new Set<bigint>();
    for (let i = 0; i < 4; i++) {
      const r = await c.simpleReply();
      expect(r.error).toBe(0);
      cookies.add(r.cookie);
    }
    expect(cookies).toEqual(new Set([1n, 2n, 3n, 4n]));
    c.send({ type: CMD.READ, cookie: 5n, offset: 2 * MiB, length: 4096 });
    expect((await c.simpleReply(4096)).data!.equals(small)).toBe(true);
    c.send({ type: CMD.READ, cookie: 6n, offset: 3 * MiB, length: MiB });
    expect((await c.simpleReply(MiB)).data!.equals(big)).toBe(true);
  });

  it('many large writes back to back, each read back', async () => {
    const c = await t.connect();
    await c.negotiate({ name: 'disk' });
    const datas = Array.from({ length: 6 }, (_, i) => pattern(MiB, 20 + i));
    c.write(Buffer.concat(datas.map((d, i) => request({ type: CMD.WRITE, cookie: BigInt(i), offset: i * MiB, payload: d }))));
    for (let i = 0; i < datas.length; i++) expect((await c.simpleReply()).error).toBe(0);
    for (let i = 0; i < datas.length; i++) {
      c.send({ type: CMD.READ, cookie: 100n, offset: i * MiB, length: MiB });
      expect((await c.simpleReply(MiB)).data!.equals(datas[i]!)).toBe(true);
    }
  });
});

describe('socket receive pieces', () => {
  it('a socket without a handle is left to its data events', () => {
    const s = new Socket();
    expect(adoptWithUserBuffers(s, { next: () => Buffer.alloc(1), received: () => {} })).toBeNull();
    s.destroy();
  });

  it('slab views never overlap, and a small tail starts a new slab', () => {
    const slab = new ReceiveSlab();
    const views: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const offer = slab.offer();
      expect(slab.offered(offer)).toBe(true);
      const view = slab.take(Math.min(offer.length, 20_000));
      view.fill(i & 0xff);
      views.push(view);
    }
    views.forEach((v, i) => expect(v.every((b) => b === (i & 0xff))).toBe(true));
    // The last views are in a later slab than the first.
    expect(views[0]!.buffer).not.toBe(views[39]!.buffer);
  });
});
