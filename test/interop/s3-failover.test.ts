// Failover of an object-store image between two daemons ("hosts": own cache dirs and run dirs).
// 1. A serves and flushes, is killed -9; B on an empty cache serves the same image read-write and
//    reads every write A had flushed.
// 2. A is alive but stopped (SIGSTOP) while B takes over; after SIGCONT, A's FLUSH gets EIO, A logs
//    FENCED, and nothing A wrote after the takeover appears: B and a later reader see B's data and
//    A's pre-takeover data only. The image checks clean.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from '../support/daemon.ts';
import { NbdClosedError, NbdRequestError, TestClient } from '../support/test-client.ts';
import { type S3Fixture, s3Fixture } from './s3-harness.ts';

const MiB = 1 << 20;
const EIO = 5;
let fx: S3Fixture | null = null;

beforeAll(async () => {
  fx = await s3Fixture('s3-failover');
}, 660_000);
afterAll(async () => {
  await fx?.close();
});

function fill(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i += 4) b.writeUInt32LE((seed * 2654435761 + i) >>> 0, i);
  return b;
}

/** A daemon on its own "host": cache dir and run dir of its own. */
function host(f: S3Fixture, name: string, img: string, extra: string[] = []): Promise<Daemon> {
  const sock = join(f.dir, `${name}.sock`);
  return Daemon.start([img, '--socket', sock, '--cache-dir', join(f.dir, `cache-${name}`), '--cache-size', '32M', ...extra], {
    env: f.env({ IOMAPD_RUN_DIR: join(f.dir, `run-${name}`) }),
  });
}

async function expectEio(p: Promise<unknown>, what: string): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `${what} should fail with EIO`).toBeInstanceOf(NbdRequestError);
  expect((err as NbdRequestError).errno, what).toBe(EIO);
}

describe('failover of an object-store image', () => {
  it('kill -9: a new host with an empty cache reads every write the old one flushed', async (ctx) => {
    if (!fx) return ctx.skip();
    const f = fx;
    const img = `s3://${f.bucket}/killed/img`;
    await f.cliOk(['create', img, '--size', '16M']);
    const a = await host(f, 'a1', img);
    const ca = await TestClient.open(a.address, 'default');
    const flushed = new Map<number, Buffer>();
    for (let i = 0; i < 12; i++) {
      const off = i * 1.25 * MiB;
      const data = fill(64 * 1024 + i * 4096, i + 1);
      await ca.writeAt(off, data, i % 4 === 3 ? 1 : 0); // every fourth one FUA
      flushed.set(off, data);
      if (i % 4 === 1) await ca.flush();
    }
    await ca.flush();
    await ca.writeAt(15 * MiB, fill(4096, 99)); // never flushed: may or may not survive
    await a.kill();
    ca.destroy();
    const b = await host(f, 'b1', img);
    try {
      const cb = await TestClient.open(b.address, 'default');
      for (const [off, data] of flushed) expect((await cb.readAt(off, data.length)).equals(data), `flushed write at ${off}`).toBe(true);
      await cb.writeAt(0, fill(4096, 7));
      await cb.flush();
      await cb.close();
    } finally {
      await b.stop();
    }
    expect(await f.cliOk(['check', img])).toMatch(/^clean: /m);
  }, 180_000);

  it('SIGSTOP: the old writer, resumed after the takeover, gets EIO and none of its later writes appear', async (ctx) => {
    if (!fx) return ctx.skip();
    const f = fx;
    const img = `s3://${f.bucket}/stopped/img`;
    await f.cliOk(['create', img, '--size', '16M']);
    const a = await host(f, 'a2', img, ['--gc-interval', '0']);
    let b: Daemon | null = null;
    try {
      const ca = await TestClient.open(a.address, 'default', 30_000);
      const before = fill(256 * 1024, 1);
      await ca.writeAt(0, before);
      await ca.flush();
      process.kill(a.pid, 'SIGSTOP');
      b = await host(f, 'b2', img);
      const cb = await TestClient.open(b.address, 'default');
      const fromB = fill(128 * 1024, 2);
      await cb.writeAt(4 * MiB, fromB);
      await cb.flush();
      process.kill(a.pid, 'SIGCONT');
      // A, resumed, keeps writing: over its own old data, over B's, and somewhere new.
      const late = fill(128 * 1024, 3);
      const writes = [ca.writeAt(0, late), ca.writeAt(4 * MiB, late), ca.writeAt(8 * MiB, late)];
      const settled = await Promise.allSettled(writes);
      for (const s of settled) {
        // A write may land in A's cache (acknowledged, never durable) or be refused; never anything else.
        if (s.status === 'rejected') expect((s.reason as NbdRequestError).errno, String(s.reason)).toBe(EIO);
      }
      await expectEio(ca.flush(), "the fenced writer's FLUSH");
      await expectEio(ca.writeAt(12 * MiB, late, 1), "the fenced writer's FUA write");
      expect(a.output()).toMatch(/FENCED/);
      expect(a.alive, 'the fenced daemon keeps running (EIO, not a crash)').toBe(true);
      await ca.close();
      // B never sees A's late writes, and keeps serving.
      expect((await cb.readAt(0, before.length)).equals(before)).toBe(true);
      expect((await cb.readAt(4 * MiB, fromB.length)).equals(fromB)).toBe(true);
      expect((await cb.readAt(8 * MiB, late.length)).equals(Buffer.alloc(late.length))).toBe(true);
      await cb.writeAt(6 * MiB, fill(4096, 4));
      await cb.flush();
      await cb.close();
    } catch (err) {
      if (err instanceof NbdClosedError) throw new Error(`a connection closed\nA:\n${a.describe()}\nB:\n${b?.describe() ?? '-'}`);
      throw err;
    } finally {
      try {
        process.kill(a.pid, 'SIGCONT');
      } catch {
        // already gone
      }
      await a.stop();
      await b?.stop();
    }
    // A stopped after being fenced: its close must not have written anything either.
    const r = await host(f, 'r2', img, ['--read-only']);
    try {
      const cr = await TestClient.open(r.address, 'default');
      expect((await cr.readAt(0, 256 * 1024)).equals(fill(256 * 1024, 1))).toBe(true);
      expect((await cr.readAt(4 * MiB, 128 * 1024)).equals(fill(128 * 1024, 2))).toBe(true);
      expect((await cr.readAt(8 * MiB, 128 * 1024)).equals(Buffer.alloc(128 * 1024))).toBe(true);
      expect((await cr.readAt(12 * MiB, 128 * 1024)).equals(Buffer.alloc(128 * 1024))).toBe(true);
      expect((await cr.readAt(6 * MiB, 4096)).equals(fill(4096, 4))).toBe(true);
      await cr.close();
    } finally {
      await r.stop();
    }
    expect(await f.cliOk(['check', img])).toMatch(/^clean: /m);
  }, 180_000);
});
