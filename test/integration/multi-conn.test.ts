// Several connections to one export share one view and one flush barrier (protocol.md §5, the
// test recipe: write on A and wait; FLUSH on B; read on C; and FUA on A, then read on B).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import type { TestClient } from '../support/test-client.ts';
import { startServer, TRANSPORTS, type TestServer } from '../support/server-fixture.ts';
import { Gate, InstrumentedDevice } from '../support/test-devices.ts';
import { CMD, FLAG, pattern, TX } from '../support/wire.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

describe.each(TRANSPORTS)('multi-connection over %s', (transport) => {
  let t: TestServer;
  let dev: InstrumentedDevice;

  beforeEach(async () => {
    dev = new InstrumentedDevice(new MemoryDevice({ size: 8 * MiB }));
    t = await startServer([{ name: 'disk', device: dev }], transport);
  });
  afterEach(async () => {
    await t.stop();
  });

  async function clients(n: number): Promise<TestClient[]> {
    const out: TestClient[] = [];
    for (let i = 0; i < n; i++) {
      const c = await t.connect();
      const { flags } = await c.negotiate({ name: 'disk' });
      expect(flags & TX.CAN_MULTI_CONN).toBe(TX.CAN_MULTI_CONN);
      out.push(c);
    }
    return out;
  }

  it('write on A (reply awaited), FLUSH on B reaches the device, read on C sees the data', async () => {
    const [a, b, c] = await clients(3);
    a!.send({ type: CMD.WRITE, cookie: 1n, offset: 1 * MiB, payload: pattern(64 * KiB, 1) });
    expect((await a!.simpleReply()).error).toBe(0);

    const flushes = dev.calls.flush;
    b!.send({ type: CMD.FLUSH, cookie: 2n });
    expect((await b!.simpleReply()).error).toBe(0);
    expect(dev.calls.flush).toBe(flushes + 1);

    c!.send({ type: CMD.READ, cookie: 3n, offset: 1 * MiB, length: 64 * KiB });
    const r = await c!.simpleReply(64 * KiB);
    expect(r.error).toBe(0);
    expect(r.data.equals(pattern(64 * KiB, 1))).toBe(true);
  });

  it('the FLUSH reply on B waits for the device flush to finish', async () => {
    const [a, b] = await clients(2);
    a!.send({ type: CMD.WRITE, cookie: 1n, offset: 0, payload: pattern(4096, 2) });
    expect((await a!.simpleReply()).error).toBe(0);
    const gate = new Gate();
    dev.hook = async (op) => {
      if (op === 'flush') await gate.wait;
    };
    b!.send({ type: CMD.FLUSH, cookie: 2n });
    await b!.expectSilence(100);
    gate.open();
    expect(await b!.simpleReply()).toMatchObject({ cookie: 2n, error: 0 });
  });

  it('FUA write on A, then read on B', async () => {
    const [a, b] = await clients(2);
    a!.send({ type: CMD.WRITE, flags: FLAG.FUA, cookie: 1n, offset: 2 * MiB, payload: pattern(4096, 3) });
    expect((await a!.simpleReply()).error).toBe(0);
    expect(dev.fuaCalls).toBe(1);
    b!.send({ type: CMD.READ, cookie: 2n, offset: 2 * MiB, length: 4096 });
    expect((await b!.simpleReply(4096)).data.equals(pattern(4096, 3))).toBe(true);
  });

  it('pipelined writes from four connections to distinct blocks all land', async () => {
    const cs = await clients(5);
    const writers = cs.slice(0, 4);
    writers.forEach((c, w) => {
      for (let i = 0; i < 16; i++) {
        const block = w * 16 + i;
        c.send({ type: CMD.WRITE, cookie: BigInt(block), offset: block * 4096, payload: pattern(4096, block) });
      }
    });
    for (const c of writers) for (let i = 0; i < 16; i++) expect((await c.simpleReply()).error).toBe(0);
    const reader = cs[4]!;
    reader.send({ type: CMD.READ, cookie: 99n, offset: 0, length: 64 * 4096 });
    const data = (await reader.simpleReply(64 * 4096)).data;
    for (let block = 0; block < 64; block++) {
      expect(data.subarray(block * 4096, (block + 1) * 4096).equals(pattern(4096, block)), `block ${block}`).toBe(true);
    }
  });
});
