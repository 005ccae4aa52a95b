// Load (issue 7 item 6): IOMAPD_LOAD_CONNECTIONS (32) connections with IOMAPD_LOAD_DEPTH (64)
// requests in flight each, for IOMAPD_LOAD_SECONDS (60), against a child daemon serving an image:
// writes with unique patterns, FUA, FLUSH, TRIM, WRITE_ZEROES and reads checked against the model
// as they complete. The daemon's RSS is sampled every second and must stay flat; no request may
// fail. Then a FLUSH, a clean stop, a restart: every sector reads back exactly as last written.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { checkImageFile } from '../../src/fs/image-file.ts';
import { seededRandom } from '../support/seeded-random.ts';
import { Daemon, runCli } from '../support/daemon.ts';
import { TestClient } from '../support/test-client.ts';
import { SECTOR, sectorValue, VolumeModel } from '../support/crash/sector-model.ts';
import { newStats, readVolume, runWorker, target } from '../support/crash/workload.ts';

const CONNECTIONS = Number(process.env.IOMAPD_LOAD_CONNECTIONS ?? 32);
const DEPTH = Number(process.env.IOMAPD_LOAD_DEPTH ?? 64);
const SECONDS = Number(process.env.IOMAPD_LOAD_SECONDS ?? 60);
const MiB = 1024 * 1024;
const VOLUME_BYTES = 64 * MiB;

it(`${CONNECTIONS} connections x ${DEPTH} in flight for ${SECONDS} s: every byte verified, RSS flat, no errors`, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-load-'));
  const image = join(dir, 'image.iomapd');
  const socket = join(dir, 'nbd.sock');
  let daemon: Daemon | null = null;
  try {
    expect((await runCli(['create', image, '--size', `${VOLUME_BYTES}`, '--capacity', '96M'])).code).toBe(0);
    daemon = await Daemon.start([image, '--socket', socket]);
    const model = new VolumeModel(VOLUME_BYTES / SECTOR);
    const t = target('default', model);
    const stats = newStats();
    const random = seededRandom(Number(process.env.IOMAPD_LOAD_SEED ?? 32_64));
    let value = 1;
    let stopped = false;
    const pipes: TestClient[] = [];
    for (let c = 0; c < CONNECTIONS; c++) pipes.push(await TestClient.open(socket, 'default'));
    const rss: number[] = [await daemon.rss()];
    const sampler = setInterval(() => void daemon!.rss().then((r) => rss.push(r)), 1000);
    const started = Date.now();
    const workers = pipes.map((pipe) =>
      runWorker({
        pipe,
        target: t,
        allModels: () => [model],
        random,
        depth: DEPTH,
        maxSectors: 64,
        stats,
        nextValue: () => value++,
        stopped: () => stopped,
        mix: { flush: 0.01, trim: 0.03, zero: 0.03, read: 0.3, fua: 0.1 },
      }),
    );
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    stopped = true;
    await Promise.all(workers);
    clearInterval(sampler);
    const elapsed = (Date.now() - started) / 1000;
    rss.push(await daemon.rss());
    // Everything is answered: a FLUSH makes it durable, then a clean stop and a restart.
    await pipes[0]!.flush();
    for (const p of pipes) await p.close();
    expect((await daemon.stop()).code).toBe(0);
    daemon = null;
    expect((await checkImageFile(image, false)).errors).toEqual([]);
    daemon = await Daemon.start([image, '--socket', socket]);
    const pipe = await TestClient.open(socket, 'default');
    const data = await readVolume(pipe, VOLUME_BYTES);
    await pipe.close();
    const wrong: string[] = [];
    for (let s = 0; s < model.sectors && wrong.length < 5; s++) {
      const got = sectorValue(data, s * SECTOR, s);
      if (got !== model.latest(s)) wrong.push(`sector ${s}: ${got}, want ${model.latest(s)}`);
    }
    const start = rss[0]!;
    const peak = Math.max(...rss);
    const end = rss.at(-1)!;
    // Flatness is judged after a 10 s warm-up (heap and pools grow to their working size first):
    // the largest sample of the last quarter against the largest of the middle of the run.
    const warm = rss.slice(Math.min(11, rss.length - 1));
    const quarter = Math.max(1, Math.floor(warm.length / 4));
    const early = Math.max(...warm.slice(0, Math.max(1, warm.length - quarter)));
    const late = Math.max(...warm.slice(-quarter));
    const requests = stats.writes + stats.reads + stats.flushes + stats.trims + stats.zeroes;
    console.log(
      `load: ${CONNECTIONS} connections x ${DEPTH} in flight, ${elapsed.toFixed(0)} s: ${requests} requests (${stats.writes} writes, ${stats.fuaWrites} FUA, ` +
        `${stats.reads} reads, ${stats.flushes} flushes, ${stats.trims} trims, ${stats.zeroes} zeroes), ` +
        `${(stats.bytesWritten / MiB).toFixed(0)} MiB written, ${(stats.bytesRead / MiB).toFixed(0)} MiB read; ` +
        `daemon RSS start ${mb(start)}, peak ${mb(peak)}, end ${mb(end)} (after warm-up: max ${mb(early)} before the last quarter, ${mb(late)} in it); ` +
        `${stats.errors.length} errors, ${wrong.length} wrong sectors after restart`,
    );
    console.log(`load: RSS every 5 s (MiB): ${rss.filter((_, i) => i % 5 === 0).map((r) => Math.round(r / MiB)).join(' ')}`);
    expect(stats.errors).toEqual([]);
    expect(stats.cutOff).toBe(0);
    expect(wrong).toEqual([]);
    expect(requests).toBeGreaterThan(CONNECTIONS * DEPTH);
    // Flat: after warming up, the daemon does not keep growing (a leak would show in the last quarter).
    if (warm.length >= 20) expect(late - early).toBeLessThan(64 * MiB);
    expect(peak).toBeLessThan(start + 768 * MiB);
  } finally {
    await daemon?.kill().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}, (SECONDS + 120) * 1000);

const mb = (n: number): string => `${(n / MiB).toFixed(0)} MiB`;
