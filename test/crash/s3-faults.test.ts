// Faults of the real store, through a loopback proxy between the daemon and radosgw
// (test/support/s3-proxy.ts): connections dropped, requests delayed, 503 SlowDown for a while are
// retried and invisible to NBD clients; a store that stays down turns FLUSH, and reads that need
// the store, into EIO within the retry budget (never a hang, never a crash); service resumes by
// itself when the proxy passes traffic again.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from '../support/daemon.ts';
import { S3Proxy } from '../support/s3-proxy.ts';
import { NbdRequestError, TestClient } from '../support/test-client.ts';
import { type S3Fixture, s3Fixture } from '../interop/s3-harness.ts';

const MiB = 1 << 20;
const EIO = 5;
/** The daemon's retry budget per store operation here (production default 60 s). */
const BUDGET_MS = 5_000;
let fx: S3Fixture | null = null;
let proxy: S3Proxy | null = null;

beforeAll(async () => {
  fx = await s3Fixture('s3-faults');
  if (fx) proxy = await S3Proxy.start(fx.ceph.AWS_ENDPOINT_URL!);
}, 660_000);
afterAll(async () => {
  await proxy?.stop();
  await fx?.close();
});

function fill(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i += 4) b.writeUInt32LE((seed * 2654435761 + i * 13) >>> 0, i);
  return b;
}

/** A daemon whose store traffic goes through the proxy; an empty cache of its own. */
function serveThroughProxy(f: S3Fixture, img: string, name: string, extra: string[] = []): Promise<Daemon> {
  return Daemon.start([img, '--socket', join(f.dir, `${name}.sock`), '--cache-dir', join(f.dir, `cache-${name}`), '--gc-interval', '0', ...extra], {
    env: f.env({
      AWS_ENDPOINT_URL: proxy!.url,
      IOMAPD_S3_PATH_STYLE: '1',
      IOMAPD_S3_RETRY_BUDGET_MS: String(BUDGET_MS),
      IOMAPD_S3_ATTEMPT_TIMEOUT_MS: '1500',
      IOMAPD_RUN_DIR: join(f.dir, `run-${name}`),
    }),
  });
}

/** Runs `p` and returns how long it took and its NBD errno (0 for success). */
async function timed(p: Promise<unknown>): Promise<{ ms: number; errno: number }> {
  const t0 = Date.now();
  try {
    await p;
    return { ms: Date.now() - t0, errno: 0 };
  } catch (err) {
    if (!(err instanceof NbdRequestError)) throw err;
    return { ms: Date.now() - t0, errno: err.errno };
  }
}

/** Puts the proxy in `mode` for `ms`, then back to passing traffic. */
function faultFor(mode: S3Proxy['mode'], ms: number): Promise<void> {
  proxy!.mode = mode;
  return new Promise((resolve) =>
    setTimeout(() => {
      proxy!.mode = { kind: 'pass' };
      resolve();
    }, ms),
  );
}

describe('object-store faults through a proxy', () => {
  it('dropped connections, delays and 503 SlowDown for a while are invisible to clients', async (ctx) => {
    if (!fx) return ctx.skip();
    const f = fx;
    const img = `s3://${f.bucket}/transient/img`;
    await f.cliOk(['create', img, '--size', '32M']);
    proxy!.mode = { kind: 'pass' };
    const d = await serveThroughProxy(f, img, 'transient');
    const written = new Map<number, Buffer>();
    try {
      const c = await TestClient.open(join(f.dir, 'transient.sock'), 'default', 60_000);
      const modes: Array<S3Proxy['mode']> = [{ kind: 'slowdown' }, { kind: 'drop' }, { kind: 'delay', ms: 400 }, { kind: 'slowdown' }];
      for (const [i, mode] of modes.entries()) {
        const faultedBefore = proxy!.faulted;
        const fault = faultFor(mode, 1_500);
        for (let k = 0; k < 4; k++) {
          const off = (i * 4 + k) * 1.5 * MiB;
          const data = fill(256 * 1024, i * 4 + k + 1);
          await c.writeAt(off, data);
          written.set(off, data);
        }
        if (mode.kind === 'drop') proxy!.dropConnections();
        const flush = await timed(c.flush());
        await fault;
        expect(flush.errno, `FLUSH during ${mode.kind}`).toBe(0);
        expect(proxy!.faulted, `the proxy misbehaved during ${mode.kind}`).toBeGreaterThan(faultedBefore);
      }
      for (const [off, data] of written) expect((await c.readAt(off, data.length)).equals(data), `read at ${off}`).toBe(true);
      await c.close();
      expect(d.alive).toBe(true);
    } finally {
      await d.stop();
    }
    // Everything acknowledged is in the bucket, for a host that reads it directly.
    const r = await Daemon.start([img, '--socket', join(f.dir, 'verify.sock'), '--read-only'], { env: f.env({ IOMAPD_RUN_DIR: join(f.dir, 'verify') }) });
    try {
      const c = await TestClient.open(join(f.dir, 'verify.sock'), 'default', 30_000);
      for (const [off, data] of written) expect((await c.readAt(off, data.length)).equals(data), `bucket read at ${off}`).toBe(true);
      await c.close();
    } finally {
      await r.stop();
    }
    expect(await f.cliOk(['check', img])).toMatch(/^clean: /m);
  }, 240_000);

  it('a store that stays down: FLUSH and cold reads get EIO in bounded time; service resumes by itself', async (ctx) => {
    if (!fx) return ctx.skip();
    const f = fx;
    const img = `s3://${f.bucket}/down/img`;
    await f.cliOk(['create', img, '--size', '32M']);
    // 8 MiB flushed by a first daemon, so a second one on an empty cache must fetch it.
    proxy!.mode = { kind: 'pass' };
    const first = fill(8 * MiB, 42);
    const a = await serveThroughProxy(f, img, 'down-a');
    const ca = await TestClient.open(join(f.dir, 'down-a.sock'), 'default', 60_000);
    for (let off = 0; off < first.length; off += MiB) await ca.writeAt(off, first.subarray(off, off + MiB));
    await ca.flush();
    await ca.close();
    await a.stop();

    const d = await serveThroughProxy(f, img, 'down-b', ['--cache-size', '8M']);
    try {
      const c = await TestClient.open(join(f.dir, 'down-b.sock'), 'default', 120_000);
      proxy!.mode = { kind: 'drop' };
      proxy!.dropConnections();
      const late = fill(64 * 1024, 7);
      await c.writeAt(16 * MiB, late); // lands in the cache: no store needed yet
      const flush = await timed(c.flush());
      expect(flush.errno, 'FLUSH with the store down').toBe(EIO);
      expect(flush.ms, 'FLUSH fails within the retry budget, not a hang').toBeLessThan(BUDGET_MS * 3);
      const read = await timed(c.readAt(2 * MiB, 64 * 1024));
      expect(read.errno, 'a cold read with the store down').toBe(EIO);
      expect(read.ms).toBeLessThan(BUDGET_MS * 3);
      console.log(`store down: FLUSH got EIO after ${flush.ms} ms, a cold read after ${read.ms} ms (retry budget ${BUDGET_MS} ms)`);
      expect(d.alive, 'the daemon survives a store outage').toBe(true);
      // The store comes back: the same connection works again, nothing to restart.
      proxy!.mode = { kind: 'pass' };
      expect((await c.readAt(2 * MiB, 64 * 1024)).equals(first.subarray(2 * MiB, 2 * MiB + 64 * 1024))).toBe(true);
      await c.flush();
      expect((await c.readAt(16 * MiB, late.length)).equals(late)).toBe(true);
      await c.close();
    } finally {
      proxy!.mode = { kind: 'pass' };
      await d.stop();
    }
    const r = await Daemon.start([img, '--socket', join(f.dir, 'down-r.sock'), '--read-only'], { env: f.env({ IOMAPD_RUN_DIR: join(f.dir, 'down-r') }) });
    try {
      const c = await TestClient.open(join(f.dir, 'down-r.sock'), 'default', 30_000);
      expect((await c.readAt(16 * MiB, 64 * 1024)).equals(fill(64 * 1024, 7)), 'the write flushed after the outage is in the bucket').toBe(true);
      expect((await c.readAt(0, 8 * MiB)).equals(first)).toBe(true);
      await c.close();
    } finally {
      await r.stop();
    }
    expect(await f.cliOk(['check', img])).toMatch(/^clean: /m);
  }, 240_000);
});
