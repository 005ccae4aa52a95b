// Issue 16's operations on an image kept in a bucket of the local Ceph: `serve --metrics` counts a
// libnbd client exactly as it does on a file image; `--min-block-size 1` serves random byte ranges
// over several connections (read-modify-write of sub-block writes, then a clean check); and
// `iomapd check s3://...` of an image being served and written, with GC compacting and deleting
// every second, stays clean: a check that read a state the writer has since moved past reads again.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from '../support/daemon.ts';
import { TestClient } from '../support/test-client.ts';
import { BYTE_RANGES, advertisedMinimum } from './byte-ranges.ts';
import { pythonWithNbd, requireTool, runOk } from './harness.ts';
import { PHASE1, TOTAL, eventually, expectRequests, scrape, serveWithMetrics, startTraffic } from './metrics-harness.ts';
import { type S3Fixture, s3Fixture } from './s3-harness.ts';

let fx: S3Fixture | null = null;

beforeAll(async () => {
  fx = await s3Fixture('s3-operations');
}, 660_000);
afterAll(async () => {
  await fx?.close();
});

/** A fresh image in the bucket with one volume `vm`; its s3:// name. */
async function freshImage(name: string, size: string): Promise<string> {
  const img = `s3://${fx!.bucket}/${name}/img`;
  await fx!.cliOk(['create', img, '--size', size, '--volume', 'vm']);
  return img;
}

/** `iomapd check IMAGE --json` must exit 0 with no errors; the report. */
async function expectClean(img: string): Promise<{ errors: string[]; rereads: number; objects: number }> {
  const r = await fx!.cli(['check', img, '--json'], undefined, 120_000);
  expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
  const report = JSON.parse(r.stdout) as { errors: string[]; rereads: number; objects: number };
  expect(report.errors).toEqual([]);
  return report;
}

describe('operations on an object-store image', () => {
  it('serve --metrics counts a libnbd client exactly; space and process metrics are there', async (ctx) => {
    if (!fx) return ctx.skip();
    requireTool(ctx, 'python3-nbd');
    const img = await freshImage('metrics', '64M');
    const args = [img, '--cache-dir', join(fx.dir, 'cache-metrics')];
    const { daemon, metrics } = await serveWithMetrics(args, '127.0.0.1:0', ['--listen', '127.0.0.1:0'], fx.env());
    try {
      expectRequests(await scrape(metrics), 'vm', {});
      const traffic = await startTraffic(daemon.uri);
      const mid = await scrape(metrics);
      expectRequests(mid, 'vm', PHASE1);
      expect(mid.value('iomapd_connections', { export: 'vm' })).toBe(1);
      expect(mid.value('iomapd_space_used_bytes')).toBeGreaterThanOrEqual(PHASE1.written);
      await traffic.resume();
      const after = await eventually(metrics, (s) => s.value('iomapd_connections', { export: 'vm' }) === 0);
      expectRequests(after, 'vm', TOTAL);
      // Every FLUSH and FUA write committed a journal object to the bucket.
      expect(after.value('iomapd_commit_duration_seconds_count')).toBeGreaterThanOrEqual(TOTAL.FLUSH);
      expect(after.value('iomapd_journal_commits_total', { export: 'vm' })).toBeGreaterThanOrEqual(1);
      expect(after.value('iomapd_space_free_bytes')! + after.value('iomapd_space_used_bytes')!).toBe(after.value('iomapd_space_capacity_bytes'));
      expect(after.value('process_resident_memory_bytes')).toBeGreaterThan(0);
    } finally {
      await daemon.stop();
    }
    await expectClean(img);
  }, 180_000);

  it('--min-block-size 1 serves random byte ranges over 4 connections; the image checks clean', async (ctx) => {
    if (!fx) return ctx.skip();
    requireTool(ctx, 'python3-nbd', 'nbdinfo');
    const img = await freshImage('bytes', '16M');
    const daemon = await Daemon.start([img, '--cache-dir', join(fx.dir, 'cache-bytes'), '--listen', '127.0.0.1:0', '--min-block-size', '1'], { env: fx.env() });
    try {
      expect(await advertisedMinimum(daemon.uri)).toBe(1);
      const r = await runOk(pythonWithNbd()!, ['-c', BYTE_RANGES, daemon.uri, '4', '1500', '16'], { timeoutMs: 150_000 });
      expect(r.stdout).toMatch(/^minimum 1$/m);
      expect(r.stdout.trim().split('\n').at(-1)).toBe('ok');
    } finally {
      await daemon.stop();
    }
    await expectClean(img);
  }, 240_000);

  it('check of an image being served and overwritten, with GC every second, is clean every time', async (ctx) => {
    if (!fx) return ctx.skip();
    const img = await freshImage('served-check', '32M');
    const socket = join(fx.dir, 'served-check.sock');
    const daemon = await Daemon.start([img, '--socket', socket, '--cache-dir', join(fx.dir, 'cache-check'), '--gc-interval', '1'], { env: fx.env() });
    const client = await TestClient.open(socket, 'vm');
    let writing = true;
    let writes = 0;
    // Overwrites of a few MiB again and again, flushed often: segments die fast and GC compacts
    // and deletes them (and old checkpoints and journals) while the checks read.
    const writer = (async () => {
      for (let i = 0; writing && i < 100_000; i++) {
        await client.writeAt(((i * 37) % 256) * 16384, Buffer.alloc(16384, i & 0xff));
        writes++;
        if (i % 8 === 7) await client.flush();
      }
      await client.flush();
    })();
    try {
      const reports = [];
      for (let k = 0; k < 4; k++) reports.push(await expectClean(img));
      writing = false;
      await writer;
      expect(writes, 'the client kept writing during the checks').toBeGreaterThan(100);
      // GC really deleted objects while the checks ran (else this proves nothing about the race).
      const passes = daemon
        .output()
        .split('\n')
        .filter((l) => l.includes('"msg":"background gc pass"'))
        .map((l) => JSON.parse(l) as { deleted: number });
      const deleted = passes.reduce((n, p) => n + p.deleted, 0);
      console.log(`[s3-operations] ${reports.length} checks clean during ${writes} writes; rereads ${reports.map((r) => r.rereads).join(', ')}; ${passes.length} GC passes deleted ${deleted} objects`);
      expect(deleted, daemon.output()).toBeGreaterThan(0);
    } finally {
      writing = false;
      await writer.catch(() => {});
      await client.close();
      await daemon.stop();
    }
    await expectClean(img);
  }, 300_000);
});
