// Kill campaign (issue 7 item 1): iomapd serves an image as a child process; a verifying workload
// runs over several connections (test/support/crash/workload.ts) while snapshots and clones are taken
// through the control channel (IMAGE.ctl); the daemon is SIGKILLed at a random moment. Then:
//   (c) the image checks clean (in-process every time, the `iomapd check` CLI every few times);
//   (d) a leak, if any, must be reclaimed by `check --repair` (counted);
//   the daemon restarts and every volume is read back whole:
//   (a) flushed and FUA data exactly, later writes or the flushed value otherwise;
//   (b) never a byte that was not written there (garbage, stale blocks, another volume's data).
// SIGKILL leaves the page cache intact, so this tests process crashes; power loss is
// test/crash/power-loss.test.ts.
//
// With `objectImage` the image is s3://BUCKET/PREFIX in a real store (test/crash/s3-kill.test.ts):
// check is the object image's (every reference resolves; leaked objects, the orphans of a kill
// between a segment upload and the journal or manifest update, are counted, not violations).
//
// Usage: node test/support/crash/kill-campaign.ts [ITERATIONS] [SEED]  (or IOMAPD_KILL_ITERATIONS / IOMAPD_KILL_SEED)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlPath } from '../../../src/control/control-server.ts';
import { RemoteAdmin } from '../../../src/control/remote-admin.ts';
import { checkImageFile } from '../../../src/fs/image-file.ts';
import { checkObjectImageStore } from '../../../src/fs/object/object-image.ts';
import { S3ObjectStore } from '../../../src/storage/s3/s3-object-store.ts';
import { seededRandom } from '../seeded-random.ts';
import { Daemon, runCli } from '../daemon.ts';
import { TestClient } from '../test-client.ts';
import { compare, SECTOR, sectorValue, VolumeModel } from './sector-model.ts';
import { newStats, readVolume, runWorker, target, type Target, type WorkloadStats } from './workload.ts';

const MiB = 1024 * 1024;
const VOLUME = 'default';
const VOLUME_BYTES = 8 * MiB;
const CAPACITY = '64M';

export interface CampaignOptions {
  iterations: number;
  seed: number;
  /** Connections to the main volume per iteration. */
  connections?: number;
  /** Run the `iomapd check` CLI every this many iterations (and on the last). */
  cliCheckEvery?: number;
  log?: (line: string) => void;
  /** Campaign an object-store image instead of a file: its name, the store's environment, extra serve options. */
  objectImage?: { readonly name: string; readonly env: NodeJS.ProcessEnv; readonly serveArgs?: readonly string[] };
}

export interface Tally {
  iterations: number;
  seed: number;
  requestsCutOff: number;
  writes: number;
  fuaWrites: number;
  flushes: number;
  trims: number;
  zeroes: number;
  liveReads: number;
  sectorsVerified: number;
  snapshots: number;
  clones: number;
  cliChecks: number;
  leaksReclaimed: number;
  /** Object images: kills after which check found a new leaked segment (uploaded, never referenced: the kill landed between upload and journal/manifest). */
  killsAfterUpload: number;
  violations: string[];
  seconds: number;
}

/** A volume the campaign tracks across restarts. */
interface Tracked {
  model: VolumeModel;
  /** Its creation was cut off by the kill: it may or may not exist after the restart. */
  maybe: boolean;
  readOnly: boolean;
}

export async function runKillCampaign(o: CampaignOptions): Promise<Tally> {
  const log = o.log ?? (() => {});
  const random = seededRandom(o.seed);
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-kill-'));
  const obj = o.objectImage;
  const image = obj?.name ?? join(dir, 'image.iomapd');
  const env = obj?.env ?? process.env;
  const serveArgs = [image, '--socket', join(dir, 'nbd.sock'), ...(obj ? ['--cache-dir', join(dir, 'cache'), ...(obj.serveArgs ?? [])] : [])];
  const ctl = controlPath(image, env);
  const socket = join(dir, 'nbd.sock');
  const started = Date.now();
  const tally: Tally = {
    iterations: 0, seed: o.seed, requestsCutOff: 0, writes: 0, fuaWrites: 0, flushes: 0, trims: 0, zeroes: 0, liveReads: 0,
    sectorsVerified: 0, snapshots: 0, clones: 0, cliChecks: 0, leaksReclaimed: 0, killsAfterUpload: 0, violations: [], seconds: 0,
  };
  const volumes = new Map<string, Tracked>([[VOLUME, { model: new VolumeModel(VOLUME_BYTES / SECTOR), maybe: false, readOnly: false }]]);
  let nextValue = 1;
  let daemon: Daemon | null = null;
  const violation = (i: number, what: string): void => {
    tally.violations.push(`iteration ${i}: ${what}`);
    log(`VIOLATION iteration ${i}: ${what}`);
  };
  try {
    const created = await runCli(['create', image, '--size', `${VOLUME_BYTES}`, '--capacity', CAPACITY], { env });
    if (created.code !== 0) throw new Error(`iomapd create failed: ${created.stderr}`);
    for (let i = 1; i <= o.iterations; i++) {
      daemon = await Daemon.start(serveArgs, { env });
      // Verify what the previous kill left (the first iteration checks the fresh image).
      await verifyVolumes(socket, volumes, tally, (w) => violation(i, w));
      await dropOldVolumes(ctl, volumes, (w) => violation(i, w));
      const stats = newStats();
      await workloadUntilKilled(daemon, ctl, socket, volumes, random, () => nextValue++, stats, o.connections ?? 4, tally);
      daemon = null;
      for (const e of stats.errors) violation(i, e);
      tally.requestsCutOff += stats.cutOff;
      tally.writes += stats.writes;
      tally.fuaWrites += stats.fuaWrites;
      tally.flushes += stats.flushes;
      tally.trims += stats.trims;
      tally.zeroes += stats.zeroes;
      tally.liveReads += stats.reads;
      await checkImage(image, env, !!obj, i === o.iterations || i % (o.cliCheckEvery ?? 25) === 0, tally, (w) => violation(i, w));
      tally.iterations = i;
      if (i % 20 === 0 || i === o.iterations) log(`kill campaign: ${i}/${o.iterations} iterations, ${tally.writes} writes, ${tally.violations.length} violations`);
    }
    // After the last kill: one more restart to verify it.
    daemon = await Daemon.start(serveArgs, { env });
    await verifyVolumes(socket, volumes, tally, (w) => violation(o.iterations, w));
    const stop = await daemon.stop();
    daemon = null;
    if (stop.code !== 0) violation(o.iterations, `iomapd exited with ${stop.code} after SIGTERM`);
    await checkImage(image, env, !!obj, true, tally, (w) => violation(o.iterations, w));
  } finally {
    await daemon?.kill().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
  tally.seconds = Math.round((Date.now() - started) / 100) / 10;
  return tally;
}

/** Reads every tracked volume through the restarted daemon and compares it with its model; then the models match the disk exactly. */
async function verifyVolumes(socket: string, volumes: Map<string, Tracked>, tally: Tally, violation: (what: string) => void): Promise<void> {
  for (const [name, t] of volumes) {
    let pipe: TestClient;
    try {
      pipe = await TestClient.open(socket, name);
    } catch (err) {
      if (t.maybe) {
        volumes.delete(name); // its creation did not survive the kill: allowed
        continue;
      }
      violation(`volume ${name} is gone after the restart: ${(err as Error).message}`);
      volumes.delete(name);
      continue;
    }
    const data = await readVolume(pipe, pipe.size);
    await pipe.close();
    for (const m of compare(t.model, data)) violation(`${name} sector ${m.sector} reads ${m.got}, allowed ${JSON.stringify(m.allowed.slice(-6))}`);
    for (let s = 0; s < t.model.sectors; s++) {
      const v = sectorValue(data, s * SECTOR, s);
      if (v >= 0) t.model.settle(s, v);
    }
    tally.sectorsVerified += t.model.sectors;
    t.maybe = false;
  }
}

/** Snapshots and clones live for one iteration: removed once verified, so space stays bounded. */
async function dropOldVolumes(ctl: string, volumes: Map<string, Tracked>, violation: (what: string) => void): Promise<void> {
  const old = [...volumes.keys()].filter((n) => n !== VOLUME);
  if (old.length === 0) return;
  const admin = await RemoteAdmin.connect(ctl);
  try {
    // Clones before the snapshots they came from.
    for (const name of old.sort((a, b) => (a.startsWith('clone') ? -1 : 0) - (b.startsWith('clone') ? -1 : 0))) {
      await admin.deleteVolume(name).catch((err: unknown) => violation(`cannot delete ${name}: ${(err as Error).message}`));
      volumes.delete(name);
    }
  } finally {
    await admin.close();
  }
}

/** The workload on every connection, a snapshot and a clone along the way, and a SIGKILL at a random moment. */
async function workloadUntilKilled(
  daemon: Daemon,
  ctl: string,
  socket: string,
  volumes: Map<string, Tracked>,
  random: () => number,
  nextValue: () => number,
  stats: WorkloadStats,
  connections: number,
  tally: Tally,
): Promise<void> {
  let stopped = false;
  const allModels = (): VolumeModel[] => [...volumes.values()].map((t) => t.model);
  const main = target(VOLUME, volumes.get(VOLUME)!.model);
  const workers: Promise<void>[] = [];
  const startWorker = (pipe: TestClient, t: Target): void => {
    workers.push(runWorker({ pipe, target: t, allModels, random, depth: 1 + Math.floor(random() * 16), maxSectors: 256, stats, nextValue, stopped: () => stopped }));
  };
  for (let c = 0; c < connections; c++) startWorker(await TestClient.open(socket, VOLUME), main);
  const iteration = tally.iterations + 1;
  const withSnapshot = random() < 0.5;
  const side = withSnapshot ? snapshotAndClone(ctl, socket, volumes, iteration, tally, startWorker) : Promise.resolve();
  // The kill lands anywhere from early in the first requests to deep into the run (later when a
  // snapshot and clone are on, so that some kills land while the clone is being written).
  await new Promise((r) => setTimeout(r, 20 + Math.floor(random() * (withSnapshot ? 700 : 300))));
  await daemon.kill();
  stopped = true;
  await Promise.allSettled([...workers, side]);
}

/**
 * Takes a snapshot of the main volume while it is being written, checks it against the model and
 * pins its model to what it holds; then a clone of it, written by one more worker.
 */
async function snapshotAndClone(
  ctl: string,
  socket: string,
  volumes: Map<string, Tracked>,
  iteration: number,
  tally: Tally,
  startWorker: (pipe: TestClient, t: Target) => void,
): Promise<void> {
  const origin = volumes.get(VOLUME)!.model;
  const snap = `snap-${iteration}`;
  const clone = `clone-${iteration}`;
  let admin: RemoteAdmin | null = null;
  try {
    admin = await connectControl(ctl);
    // The snapshot holds every write answered before it was asked for, and possibly ones in flight (K2).
    const mark = origin.flushBegin();
    const recording = origin.recordFrom(mark);
    const tracked: Tracked = { model: origin.copyCurrent(), maybe: true, readOnly: true };
    volumes.set(snap, tracked);
    try {
      await admin.snapshot(VOLUME, snap);
    } finally {
      // Done, or cut off by the kill: the candidates are every value from the mark until now.
      tracked.model = recording.finish();
    }
    const snapModel = tracked.model;
    origin.flushEnd(mark);
    tally.snapshots++;
    // Pin the snapshot's model to its real contents (it is read-only and committed), checked first.
    const pipe = await TestClient.open(socket, snap);
    const data = await readVolume(pipe, pipe.size);
    await pipe.close();
    const bad = compare(snapModel, data);
    if (bad.length > 0) throw new Error(`snapshot ${snap} holds unexpected data: ${JSON.stringify(bad)}`);
    for (let s = 0; s < snapModel.sectors; s++) snapModel.settle(s, sectorValue(data, s * SECTOR, s));
    volumes.get(snap)!.maybe = false;
    const cloneModel = snapModel.copyCurrent();
    volumes.set(clone, { model: cloneModel, maybe: true, readOnly: false });
    await admin.clone(snap, clone);
    volumes.get(clone)!.maybe = false;
    tally.clones++;
    startWorker(await TestClient.open(socket, clone), target(clone, cloneModel));
  } catch (err) {
    // The kill cut it short (expected), or something real went wrong (reported).
    const msg = (err as Error).message;
    if (!/closed|ECONNREFUSED|ECONNRESET|EPIPE|ENOENT|no answer|connection closed/i.test(msg)) {
      tally.violations.push(`iteration ${iteration}: snapshot/clone: ${msg}`);
    }
  } finally {
    await admin?.close().catch(() => {});
  }
}

async function connectControl(path: string): Promise<RemoteAdmin> {
  // The daemon opens the control socket just after the NBD socket: retry briefly.
  for (let attempt = 0; ; attempt++) {
    try {
      return await RemoteAdmin.connect(path, 2000);
    } catch (err) {
      if (attempt >= 50) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** (c) and (d): the image must check clean; a leak is tolerated only if repair reclaims it. */
async function checkImage(image: string, env: NodeJS.ProcessEnv, object: boolean, viaCli: boolean, tally: Tally, violation: (what: string) => void): Promise<void> {
  if (object) await checkObject(image, env, tally, violation);
  else await checkFile(image, tally, violation);
  if (viaCli) {
    const r = await runCli(['check', image], { env });
    tally.cliChecks++;
    if (r.code !== 0 || !r.stdout.includes('clean')) violation(`iomapd check exited ${r.code}: ${r.stdout} ${r.stderr}`);
  }
}

/** Leaked segments already counted (no GC runs during a campaign, so they stay). */
const seenLeaks = new Set<string>();

/** Every reference resolves; leaked objects (GC's to delete) are counted. */
async function checkObject(image: string, env: NodeJS.ProcessEnv, tally: Tally, violation: (what: string) => void): Promise<void> {
  const store = await S3ObjectStore.connect(image, { env, requirePrefix: true });
  try {
    const report = await checkObjectImageStore(store);
    for (const e of report.errors) violation(`check: ${e}`);
    const fresh = report.leaked.filter((k) => k.startsWith('seg/') && !seenLeaks.has(k));
    if (fresh.length > 0) tally.killsAfterUpload++;
    for (const k of fresh) seenLeaks.add(k);
  } finally {
    store.close();
  }
}

async function checkFile(image: string, tally: Tally, violation: (what: string) => void): Promise<void> {
  const report = await checkImageFile(image, false);
  if (report.errors.length > 0) {
    if (report.errors.every((e) => e.includes('leaked'))) {
      const repaired = await checkImageFile(image, true);
      const after = await checkImageFile(image, false);
      if (repaired.repaired && after.errors.length === 0) tally.leaksReclaimed++;
      else violation(`leak not reclaimed by check --repair: ${after.errors.join('; ')}`);
    } else {
      violation(`check: ${report.errors.slice(0, 5).join('; ')}`);
    }
  }
}

function formatTally(t: Tally): string {
  return [
    `kill campaign (seed ${t.seed}): ${t.iterations} iterations in ${t.seconds} s, ${t.violations.length} violations`,
    `  requests: ${t.writes} writes (${t.fuaWrites} FUA), ${t.flushes} flushes, ${t.trims} trims, ${t.zeroes} zeroes, ${t.liveReads} live reads; ${t.requestsCutOff} cut off by the kill`,
    `  verified: ${t.sectorsVerified} sectors after restarts; ${t.snapshots} snapshots, ${t.clones} clones while writing`,
    `  check: clean after every kill (${t.cliChecks} via the iomapd check CLI); leaks reclaimed by repair: ${t.leaksReclaimed}; object images: ${t.killsAfterUpload} kills left a segment uploaded but not yet referenced`,
  ].join('\n');
}

export { formatTally };

if (import.meta.main) {
  const iterations = Number(process.argv[2] ?? process.env.IOMAPD_KILL_ITERATIONS ?? 200);
  const seed = Number(process.argv[3] ?? process.env.IOMAPD_KILL_SEED ?? 20_260_707);
  const tally = await runKillCampaign({ iterations, seed, log: (l) => console.log(l) });
  console.log(formatTally(tally));
  for (const v of tally.violations.slice(0, 30)) console.log(`  ${v}`);
  process.exitCode = tally.violations.length === 0 ? 0 : 1;
}
