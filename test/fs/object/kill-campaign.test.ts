// Kill campaign in process: a seeded random workload (whole-block and sub-block writes, trims,
// flushes, snapshots and their deletion, GC) against the fake bucket, "crashed" after each PUT in
// turn. A restart on the bucket as it was (a new host, empty cache) must read back every
// acknowledged flush's data (or a later write of the same block), keep every acknowledged snapshot
// with its contents, and check clean; after its own GC nothing is leaked.
import { describe, expect, it } from 'vitest';
import type { ImageStore } from '../../../src/fs/image-store.ts';
import { checkObjectImage } from '../../../src/fs/object/object-check.ts';
import { collectGarbage } from '../../../src/fs/object/object-gc.ts';
import type { ObjectImageStore } from '../../../src/fs/object/object-image-store.ts';
import { CrashingClient, FakeObjectStore } from '../../support/fake-object-store.ts';
import { seededRandom } from '../../support/seeded-random.ts';
import { punch } from '../support/mini-engine.ts';
import { createSmall, openSmall, pattern, readBytes, writeBytes } from './helpers.ts';

const B = 4096;
const BLOCKS = 48;
const STEPS = 60;
const SEEDS = Number(process.env.IOMAPD_OBJECT_KILL_SEEDS ?? 3);

interface Model {
  /** Per block: every content it may have after a crash (the acknowledged one and later writes). */
  possible: Buffer[][];
  current: Buffer[];
  /** Snapshots: contents when taken, and whether their creation (or deletion) was acknowledged. */
  snaps: Map<string, { content: Buffer[]; created: boolean; deleted: boolean | null }>;
}

function newModel(): Model {
  const zero = Buffer.alloc(B);
  return { possible: Array.from({ length: BLOCKS }, () => [zero]), current: Array.from({ length: BLOCKS }, () => zero), snaps: new Map() };
}

function ack(m: Model): void {
  for (let i = 0; i < BLOCKS; i++) m.possible[i] = [m.current[i]!];
}

function setBlock(m: Model, i: number, data: Buffer): void {
  m.current[i] = data;
  m.possible[i]!.push(data);
}

/** Runs the workload until it ends or the store crashes; the model records what was acknowledged. */
async function workload(a: ObjectImageStore, seed: number, m: Model): Promise<void> {
  const rnd = seededRandom(seed);
  const pick = (n: number) => Math.floor(rnd() * n);
  let snapNo = 0;
  for (let step = 0; step < STEPS; step++) {
    const what = rnd();
    if (what < 0.45) {
      const first = pick(BLOCKS - 3);
      const n = 1 + pick(3);
      const data = pattern(n * B, seed * 100_000 + step);
      await writeBytes(a, 'v', first * B, data);
      for (let i = 0; i < n; i++) setBlock(m, first + i, data.subarray(i * B, (i + 1) * B));
    } else if (what < 0.6) {
      const blk = pick(BLOCKS);
      const at = pick(8) * 512;
      const piece = Buffer.alloc(512, 1 + pick(250));
      await writeBytes(a, 'v', blk * B + at, piece);
      const next = Buffer.from(m.current[blk]!);
      piece.copy(next, at);
      setBlock(m, blk, next);
    } else if (what < 0.67) {
      const blk = pick(BLOCKS - 2);
      await punch(a as unknown as ImageStore, 'v', blk * B, 2 * B, 'trim');
      setBlock(m, blk, Buffer.alloc(B));
      setBlock(m, blk + 1, Buffer.alloc(B));
    } else if (what < 0.85) {
      await a.commit();
      ack(m);
    } else if (what < 0.92) {
      const name = `s${snapNo++}`;
      const snap = { content: [...m.current], created: false, deleted: null as boolean | null };
      m.snaps.set(name, snap);
      await a.snapshot('v', name); // commits: everything before is acknowledged with it
      snap.created = true;
      ack(m);
    } else if (what < 0.96) {
      const live = [...m.snaps].filter(([, s]) => s.created && s.deleted === null);
      if (live.length === 0) continue;
      const [name, snap] = live[pick(live.length)]!;
      snap.deleted = false;
      await a.deleteVolume(name);
      snap.deleted = true;
      ack(m);
    } else {
      await collectGarbage(a, { graceMs: 0, threshold: 0.6 });
      ack(m);
    }
  }
  await a.commit();
  ack(m);
}

async function verify(bucket: FakeObjectStore, m: Model, label: string): Promise<void> {
  const report = await checkObjectImage(bucket);
  expect(report.errors, label).toEqual([]);
  const b = await openSmall(bucket);
  for (let i = 0; i < BLOCKS; i++) {
    const got = await readBytes(b, 'v', i * B, B);
    if (!m.possible[i]!.some((p) => p.equals(got))) expect.fail(`${label}: block ${i} holds data no acknowledged state allows`);
  }
  const names = new Set(b.listVolumes().map((v) => v.name));
  for (const [name, s] of m.snaps) {
    if (s.deleted === true) expect(names.has(name), `${label}: deleted ${name}`).toBe(false);
    else if (s.created && s.deleted === null) expect(names.has(name), `${label}: lost ${name}`).toBe(true);
    if (!names.has(name)) continue;
    for (let i = 0; i < BLOCKS; i++) {
      const got = await readBytes(b, name, i * B, B);
      if (!got.equals(s.content[i]!)) expect.fail(`${label}: snapshot ${name} block ${i} changed`);
    }
  }
  await collectGarbage(b, { graceMs: 0 });
  await b.close();
  const after = await checkObjectImage(bucket);
  expect(after.errors, label).toEqual([]);
  expect(after.leaked, label).toEqual([]);
}

async function run(seed: number, crashAfter: number | null): Promise<{ bucket: FakeObjectStore; puts: number; model: Model }> {
  const bucket = new FakeObjectStore({ pageSize: 20 });
  const a = await createSmall(bucket, { segmentBlocks: 8, checkpointEvery: 5 });
  await a.createVolume('v', BLOCKS * B);
  await a.close();
  const puts0 = bucket.counters.calls.putIfAbsent + bucket.counters.calls.putIfMatch;
  const w = await openSmall(bucket, { segmentBlocks: 8, checkpointEvery: 5 });
  bucket.reorder(3, seed); // concurrent uploads land in any order
  if (crashAfter !== null) bucket.crashAfter(crashAfter);
  const model = newModel();
  try {
    await workload(w, seed, model);
  } catch (err) {
    if (crashAfter === null || !bucket.crashed) throw err;
    expect((err as { code?: string }).code).toBe('STORE_UNAVAILABLE');
  }
  w.abandon();
  return { bucket: bucket.durable(), puts: bucket.counters.calls.putIfAbsent + bucket.counters.calls.putIfMatch - puts0, model };
}

describe('object image kill campaign', () => {
  it(`survives a crash after every PUT of ${SEEDS} seeded workloads`, async () => {
    let crashes = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const full = await run(seed, null);
      await verify(full.bucket, full.model, `seed ${seed} without a crash`);
      for (let k = 0; k <= full.puts; k++) {
        const r = await run(seed, k);
        await verify(r.bucket, r.model, `seed ${seed} crash after PUT ${k}`);
        crashes++;
      }
    }
    expect(crashes).toBeGreaterThan(SEEDS * 20);
  }, 120_000);

  it('survives an opener killed after each of its PUTs while the old writer goes on', async () => {
    let runs = 0;
    for (let k = 0; ; k++) {
      const bucket = new FakeObjectStore({ pageSize: 20 });
      const a = await createSmall(bucket, { checkpointEvery: 1000 });
      await a.createVolume('v', BLOCKS * B);
      const m = newModel();
      for (let i = 0; i < 6; i++) {
        const data = pattern(B, 500 + i);
        await writeBytes(a, 'v', i * B, data);
        setBlock(m, i, data);
      }
      await a.commit();
      ack(m);
      // B starts taking over and dies after its k-th PUT (epoch bump, seal, checkpoint, manifest).
      const client = new CrashingClient(bucket, k);
      const opened = await openSmall(client).then(
        (b) => b,
        (err: unknown) => {
          expect((err as { code?: string }).code).toBe('STORE_UNAVAILABLE');
          return null;
        },
      );
      // A goes on: its commits either land (B had not sealed yet) or fail FENCED.
      const data = pattern(B, 900 + k);
      await writeBytes(a, 'v', 10 * B, data).catch(() => {});
      setBlock(m, 10, data);
      const fenced = await a.commit().then(
        () => false,
        (err: unknown) => {
          expect((err as { code?: string }).code).toBe('FENCED');
          return true;
        },
      );
      if (!fenced) ack(m);
      await verify(bucket.durable(), m, `opener killed after PUT ${k}`);
      runs++;
      if (opened) break; // B's open finished: every PUT of it was a crash point
    }
    expect(runs).toBeGreaterThanOrEqual(4);
  });
});
