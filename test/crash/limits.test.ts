// Limits (issue 7 item 5; README "Limits"): maximum connections, requests in flight per
// connection and over the server, handshake and idle timeouts, export-name validation, and the
// `iomapd serve` options that set them. In-process server on a Unix socket, a memory device.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import type { ServerLimits } from '../../src/server/limits.ts';
import { Daemon, runCli } from '../support/daemon.ts';
import { TestClient } from '../support/test-client.ts';
import { startServer, type TestServer } from '../support/server-fixture.ts';
import { Gate, InstrumentedDevice, sleep, until } from '../support/test-devices.ts';
import { clientFlags, CMD, infoData, OPT, option, REP, W, wire } from '../support/wire.ts';

const MiB = 1024 * 1024;
let server: TestServer | null = null;

afterEach(async () => {
  await server?.stop();
  server = null;
});

/** A server whose device holds every write at `gate` (when given), counting how many wait there at once. */
async function serve(limits: Partial<ServerLimits>, gate?: Gate): Promise<{ device: InstrumentedDevice; peak: () => number }> {
  let peak = 0;
  const device = new InstrumentedDevice(new MemoryDevice({ size: 4 * MiB }), async (op) => {
    if (op !== 'write' || !gate) return;
    peak = Math.max(peak, device.active);
    await gate.wait;
  });
  server = await startServer([{ name: 'disk', device }], 'unix', limits);
  return { device, peak: () => peak };
}

async function negotiated(): Promise<TestClient> {
  const c = await server!.connect();
  await c.negotiate({ name: 'disk' });
  return c;
}

function write(c: TestClient, cookie: bigint, sector: number): void {
  c.send({ type: CMD.WRITE, cookie, offset: sector * 512, payload: Buffer.alloc(512, Number(cookie & 0xffn)) });
}

describe('maximum connections', () => {
  it('closes connections beyond the limit right after accept and counts them; a freed slot is usable again', async () => {
    await serve({ maxConnections: 2 });
    const a = await negotiated();
    const b = await server!.connect();
    await b.greeting();
    const extra = await server!.connect();
    expect((await extra.expectClose()).length).toBe(0); // not even a greeting
    expect(server!.server.refusedConnections).toBe(1);
    a.destroy();
    await until(() => server!.server.connectionCount === 1, 3000, 'the closed connection to go');
    const again = await negotiated();
    expect(again.closed).toBe(false);
  });
});

describe('requests in flight', () => {
  it('per connection: past the limit the server stops reading requests until one is answered', async () => {
    const gate = new Gate();
    const { device, peak } = await serve({ maxInFlightPerConnection: 2 }, gate);
    const c = await negotiated();
    for (let i = 1; i <= 6; i++) write(c, BigInt(i), i);
    await until(() => device.active === 2, 3000, 'two writes at the device');
    await sleep(100);
    expect(device.active).toBe(2);
    gate.open();
    const cookies = new Set<bigint>();
    for (let i = 0; i < 6; i++) {
      const r = await c.simpleReply();
      expect(r.error).toBe(0);
      cookies.add(r.cookie);
    }
    expect(cookies.size).toBe(6);
    expect(peak()).toBeLessThanOrEqual(2);
  });

  it('over the server: connections together never hold more than the total, and all finish', async () => {
    const gate = new Gate();
    const { device, peak } = await serve({ maxInFlightTotal: 3 }, gate);
    const clients = [await negotiated(), await negotiated(), await negotiated()];
    for (const [k, c] of clients.entries()) for (let i = 1; i <= 4; i++) write(c, BigInt(i), k * 8 + i);
    await until(() => device.active === 3, 3000, 'three writes at the device');
    await sleep(100);
    expect(device.active).toBe(3);
    expect(server!.server.budget.inFlight).toBe(3);
    gate.open();
    for (const c of clients) for (let i = 0; i < 4; i++) expect((await c.simpleReply()).error).toBe(0);
    expect(peak()).toBeLessThanOrEqual(3);
    await until(() => server!.server.budget.inFlight === 0, 3000, 'the budget to drain');
  });
});

describe('handshake timeout', () => {
  it('closes a client that connects and sends nothing', async () => {
    await serve({ handshakeTimeoutMs: 300 });
    const c = await server!.connect();
    await c.greeting();
    const t0 = Date.now();
    await c.expectClose(3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });

  it('closes a client that stalls mid-option, and one that keeps negotiating past the limit', async () => {
    await serve({ handshakeTimeoutMs: 400 });
    const stalled = await server!.connect();
    await stalled.start();
    stalled.write(option(OPT.GO, infoData('disk')).subarray(0, 10)); // a header cut short
    const chatty = await server!.connect();
    await chatty.start();
    const deadline = Date.now() + 3000;
    // LIST over and over: each answered, but the handshake never ends.
    while (!chatty.closed && Date.now() < deadline) {
      chatty.write(option(OPT.LIST));
      await chatty.optionReply().catch(() => null);
      await sleep(20);
    }
    expect(chatty.closed).toBe(true);
    await stalled.expectClose(3000);
  });

  it('does not touch a client that finished the handshake in time', async () => {
    await serve({ handshakeTimeoutMs: 200 });
    const c = await negotiated();
    await sleep(500);
    expect(c.closed).toBe(false);
    c.send({ type: CMD.FLUSH, cookie: 1n });
    expect((await c.simpleReply()).error).toBe(0);
  });
});

describe('idle timeout', () => {
  it('is off by default: an idle connection stays open', async () => {
    await serve({});
    const c = await negotiated();
    await c.expectSilence(700);
    expect(c.closed).toBe(false);
  });

  it('closes a connection idle with nothing in flight, but never one whose request is still running', async () => {
    const gate = new Gate();
    await serve({ idleTimeoutMs: 250 }, gate);
    const busy = await negotiated();
    write(busy, 1n, 1);
    const idle = await negotiated();
    await idle.expectClose(3000);
    await sleep(300);
    expect(busy.closed).toBe(false); // its write has been in flight longer than the idle time
    gate.open();
    expect((await busy.simpleReply()).error).toBe(0);
    await busy.expectClose(3000); // then it is idle too
  });
});

describe('export-name validation', () => {
  it('GO with a name over 4096 bytes, invalid UTF-8 or a NUL gets ERR_INVALID, and negotiation goes on', async () => {
    await serve({});
    const c = await server!.connect();
    await c.start();
    const bad = [Buffer.alloc(4097, 0x61), Buffer.from([0x64, 0xff, 0xfe]), Buffer.from('di\0sk')];
    for (const name of bad) {
      const data = wire().u32(name.length).raw(name).u16(0).build();
      const replies = await c.opt(OPT.GO, data);
      expect(replies.map((r) => r.type)).toEqual([REP.ERR_INVALID]);
    }
    const ok = await c.go('disk');
    expect(ok.size).toBe(BigInt(4 * MiB));
  });

  it('EXPORT_NAME with an overlong name closes the connection (it cannot carry an error)', async () => {
    await serve({});
    const c = await server!.connect();
    await c.start();
    c.write(option(OPT.EXPORT_NAME, Buffer.alloc(5000, 0x61)));
    await c.expectClose();
  });

  it('an option longer than 64 KiB is a hard disconnect, not a buffer', async () => {
    await serve({});
    const c = await server!.connect();
    await c.greeting();
    c.write(Buffer.concat([clientFlags(3), wire().u64(W.IHAVEOPT).u32(OPT.GO).u32(64 * 1024 + 1).build()]));
    await c.expectClose();
  });
});

describe('iomapd serve options', () => {
  it('rejects a bad limit before serving anything', async () => {
    const r = await runCli(['serve', '--size', '1M', '--socket', '/nonexistent/x.sock', '--max-connections', '0'], { timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toContain('BAD_ARGUMENT');
  });

  it('--handshake-timeout reaches the server: a silent client is closed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'iomapd-limits-'));
    const path = join(dir, 's.sock');
    try {
      const daemon = await Daemon.start(['--size', '1M', '--socket', path, '--handshake-timeout', '0.3', '--max-connections', '1']);
      try {
        const c = await TestClient.connect({ path });
        await c.greeting();
        const extra = await TestClient.connect({ path });
        await extra.expectClose(); // --max-connections 1
        await c.expectClose(3000);
        const out = (): string => daemon.output();
        await until(() => out().includes('no complete handshake within 300 ms') && out().includes('too many connections'), 3000, 'both logged');
      } finally {
        await daemon.kill();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
