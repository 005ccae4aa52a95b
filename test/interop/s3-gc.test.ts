// GC on the local Ceph: a volume overwritten three times, with a snapshot after each of the first
// two passes; the snapshots deleted; `iomapd gc` (through the serving daemon, then from the CLI on
// the idle image) brings the bucket's bytes, summed by listing, under 1.3x the live data, with
// every byte still readable by a new host and check clean. Prints the figures.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Daemon } from '../support/daemon.ts';
import { TestClient } from '../support/test-client.ts';
import { type S3Fixture, s3Fixture } from './s3-harness.ts';

const MiB = 1 << 20;
const VOLUME = 16 * MiB;
let fx: S3Fixture | null = null;

beforeAll(async () => {
  fx = await s3Fixture('s3-gc');
}, 660_000);
afterAll(async () => {
  await fx?.close();
});

function pass(seed: number): Buffer {
  const b = Buffer.alloc(VOLUME);
  for (let i = 0; i < VOLUME; i += 4) b.writeUInt32LE((seed * 0x9e3779b1 + i * 7) >>> 0, i);
  return b;
}

it('overwrite three times, delete the snapshots, gc: bucket bytes under 1.3x the live data', async (ctx) => {
  if (!fx) return ctx.skip();
  const f = fx;
  const prefix = 'gc/img';
  const img = `s3://${f.bucket}/${prefix}`;
  await f.cliOk(['create', img, '--size', '16M', '--capacity', '64M']);
  const sock = join(f.dir, 'gc.sock');
  const d = await Daemon.start([img, '--socket', sock, '--cache-dir', join(f.dir, 'cache'), '--gc-interval', '0'], { env: f.env() });
  let figures = '';
  try {
    const c = await TestClient.open(sock, 'default', 30_000);
    for (let p = 1; p <= 3; p++) {
      const data = pass(p);
      for (let off = 0; off < VOLUME; off += MiB) await c.writeAt(off, data.subarray(off, off + MiB));
      await c.flush();
      if (p < 3) await f.cliOk(['snapshot', img, 'default', `s${p}`]);
    }
    await c.close();
    const before = await f.bucketBytes(`${prefix}/`);
    for (const s of ['s1', 's2']) await f.cliOk(['volume', 'rm', img, s]);
    const viaDaemon = await f.cliOk(['gc', img]);
    const afterDaemon = await f.bucketBytes(`${prefix}/`);
    figures += `before gc: ${before.objects} objects, ${before.bytes} bytes (${(before.bytes / VOLUME).toFixed(2)}x live)\n`;
    figures += `after gc through the daemon: ${afterDaemon.objects} objects, ${afterDaemon.bytes} bytes (${(afterDaemon.bytes / VOLUME).toFixed(2)}x live); ${viaDaemon}`;
    expect(before.bytes, figures).toBeGreaterThan(2.5 * VOLUME); // three passes' data were there
    expect(afterDaemon.bytes, figures).toBeLessThan(1.3 * VOLUME);
  } finally {
    await d.stop();
  }
  // The idle image from the CLI (a new epoch: the old writer's leftovers need --grace 0).
  const viaCli = await f.cliOk(['gc', img, '--grace', '0']);
  const after = await f.bucketBytes(`${prefix}/`);
  figures += `after gc from the CLI: ${after.objects} objects, ${after.bytes} bytes (${(after.bytes / VOLUME).toFixed(2)}x live); ${viaCli}`;
  console.log(figures);
  expect(after.bytes, figures).toBeLessThan(1.3 * VOLUME);
  const check = JSON.parse(await f.cliOk(['check', img, '--json'])) as { errors: string[]; liveBytes: number; bytes: number };
  expect(check.errors).toEqual([]);
  expect(check.liveBytes).toBe(VOLUME);
  // Every byte of the last pass is still there, for a new host with an empty cache.
  const r = await Daemon.start([img, '--socket', join(f.dir, 'r.sock'), '--read-only'], { env: f.env({ IOMAPD_RUN_DIR: join(f.dir, 'r') }) });
  try {
    const c = await TestClient.open(join(f.dir, 'r.sock'), 'default', 30_000);
    const want = pass(3);
    for (let off = 0; off < VOLUME; off += 4 * MiB) expect((await c.readAt(off, 4 * MiB)).equals(want.subarray(off, off + 4 * MiB)), `bytes at ${off}`).toBe(true);
    await c.close();
  } finally {
    await r.stop();
  }
}, 300_000);
