// The history diff (src/fs/diff.ts): sound (every sector where FROM and TO differ lies in a
// reported range) and precise (bytes reported beyond the true change stay under 1% on block-
// aligned workloads), over random histories of writes, trims, zeroes, snapshots and clones; and
// pairs that are not two points of one history are refused with BAD_ARGUMENT.
import { describe, expect, it } from 'vitest';
import { type DiffRange, diffVolumes, historyPoints } from '../../src/fs/diff.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { runHistory } from '../support/history-workload.ts';
import { readBytes, writeBytes } from './support/mini-engine.ts';

const CASES = Number(process.env.IOMAPD_DIFF_CASES ?? 60);
const SEED = Number(process.env.IOMAPD_DIFF_SEED ?? 20261203);
const B = 4096;

async function freshStore(mib = 16): Promise<ImageStore> {
  return ImageStore.create(new MemoryStorage(Buffer.alloc((mib + 2) << 20, 0xee)), { dataBytes: mib << 20, journalBytes: 256 << 10 });
}

/** Sectors (512 bytes) where a and b differ, and how many of them a range list misses. */
function compare(a: Buffer, b: Buffer, ranges: readonly DiffRange[]): { differing: number; missed: number[] } {
  const covered = new Uint8Array(b.length / 512);
  for (const r of ranges) for (let s = r.offset / 512; s < (r.offset + r.length) / 512; s++) covered[s] = 1;
  let differing = 0;
  const missed: number[] = [];
  for (let s = 0; s < covered.length; s++) {
    const x = a.subarray(s * 512, s * 512 + 512);
    const y = b.subarray(s * 512, s * 512 + 512);
    if (x.length === y.length && x.equals(y)) continue;
    if (x.length === 0 && y.every((v) => v === 0)) continue;
    differing++;
    if (!covered[s]) missed.push(s * 512);
  }
  return { differing, missed };
}

async function checkAllPairs(store: ImageStore, volumes: string[]): Promise<{ pairs: number; trueBytes: number; reported: number }> {
  let pairs = 0;
  let trueBytes = 0;
  let reported = 0;
  for (const to of volumes) {
    const toBytes = await readBytes(store, to, 0, store.volumes.facts(to).size);
    for (const from of historyPoints(store.volumes, to)) {
      const ranges = await diffVolumes(store, from.name, to);
      const fromBytes = await readBytes(store, from.name, 0, from.size);
      const { differing, missed } = compare(fromBytes, toBytes, ranges);
      expect(missed, `${from.name} -> ${to}: differing sectors reported clean`).toEqual([]);
      for (const r of ranges) {
        expect(r.offset % 512).toBe(0);
        const zeros = toBytes.subarray(r.offset, r.offset + r.length).every((v) => v === 0);
        if (r.zero) expect(zeros, `${from.name} -> ${to}: a zero range that reads data`).toBe(true);
      }
      pairs++;
      trueBytes += differing * 512;
      reported += ranges.reduce((n, r) => n + r.length, 0);
    }
  }
  return { pairs, trueBytes, reported };
}

describe('history diff', () => {
  it(`is sound and precise over ${CASES} random block-aligned histories`, async () => {
    let totals = { pairs: 0, trueBytes: 0, reported: 0 };
    for (let i = 0; i < CASES; i++) {
      const store = await freshStore();
      const h = await runHistory(store, 'w', SEED + i, { blocks: 64, ops: 12, partial: false });
      const r = await checkAllPairs(store, [h.s1, h.s2, h.volume, ...(h.clone ? [h.clone, h.cloneSnap!] : [])]);
      totals = { pairs: totals.pairs + r.pairs, trueBytes: totals.trueBytes + r.trueBytes, reported: totals.reported + r.reported };
      await store.close();
    }
    const excess = (totals.reported - totals.trueBytes) / Math.max(1, totals.trueBytes);
    console.log(`diff precision: ${totals.pairs} pairs over ${CASES} histories, ${totals.trueBytes} bytes changed, ${totals.reported} reported, excess ${(excess * 100).toFixed(3)}%`);
    expect(totals.pairs).toBeGreaterThan(CASES * 3);
    expect(totals.trueBytes).toBeGreaterThan(0);
    expect(excess).toBeLessThan(0.01);
  }, 120_000);

  it(`is sound with partial-block writes (${Math.ceil(CASES / 2)} histories); excess is the block rounding`, async () => {
    let totals = { pairs: 0, trueBytes: 0, reported: 0 };
    for (let i = 0; i < Math.ceil(CASES / 2); i++) {
      const store = await freshStore();
      const h = await runHistory(store, 'p', SEED + 1000 + i, { blocks: 32, ops: 10, partial: true });
      const r = await checkAllPairs(store, [h.s1, h.s2, h.volume, ...(h.clone ? [h.clone, h.cloneSnap!] : [])]);
      totals = { pairs: totals.pairs + r.pairs, trueBytes: totals.trueBytes + r.trueBytes, reported: totals.reported + r.reported };
      await store.close();
    }
    const excess = (totals.reported - totals.trueBytes) / Math.max(1, totals.trueBytes);
    console.log(`diff with partial-block writes: ${totals.pairs} pairs, excess ${(excess * 100).toFixed(2)}% (granularity ${B})`);
    expect(totals.pairs).toBeGreaterThan(0);
  }, 120_000);

  it('reports data that became a hole or unwritten as zero ranges, and a grown TO past FROM', async () => {
    const store = await freshStore();
    await store.createVolume('v', 8 * B);
    await writeBytes(store, 'v', 0, Buffer.alloc(4 * B, 0xab));
    await store.snapshot('v', 's1');
    await store.begin('v', 0, B, 'trim').then((m) => store.end(m, B));
    await store.begin('v', B, B, 'zero', { noHole: true }).then((m) => store.end(m, B));
    await store.resizeVolume('v', 12 * B);
    await writeBytes(store, 'v', 10 * B, Buffer.alloc(B, 1));
    expect(await diffVolumes(store, 's1', 'v')).toEqual([
      { offset: 0, length: 2 * B, zero: true },
      { offset: 10 * B, length: B, zero: false },
    ]);
    // a hole becoming unwritten reads zeros before and after: clean
    await store.begin('v', 6 * B, B, 'zero', { noHole: true }).then((m) => store.end(m, B));
    expect(await diffVolumes(store, 's1', 'v')).toHaveLength(2);
  });

  it('compares inline volumes byte by byte', async () => {
    const store = await freshStore();
    await store.createVolume('tiny', 2048);
    await writeBytes(store, 'tiny', 0, Buffer.alloc(1024, 7));
    await store.snapshot('tiny', 't1');
    await writeBytes(store, 'tiny', 512, Buffer.alloc(512, 9));
    expect(await diffVolumes(store, 't1', 'tiny')).toEqual([{ offset: 512, length: 512, zero: false }]);
    await store.resizeVolume('tiny', 2 * B); // moves to a block
    const d = await diffVolumes(store, 't1', 'tiny');
    expect(d[0]).toMatchObject({ offset: 0, zero: false });
    expect(d.reduce((n, r) => n + r.length, 0)).toBeGreaterThanOrEqual(2048);
  });

  it('refuses pairs that are not two points of one history', async () => {
    const store = await freshStore();
    await store.createVolume('v', 8 * B);
    await store.createVolume('other', 8 * B);
    await store.snapshot('v', 's1');
    await store.snapshot('v', 's2');
    await store.snapshot('other', 'o1');
    await store.clone('s1', 'c');
    const refused = async (from: string, to: string, why: RegExp): Promise<void> => {
      await expect(diffVolumes(store, from, to)).rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringMatching(why) });
    };
    await refused('v', 's1', /v is not a snapshot/);
    await refused('s1', 's1', /same volume/);
    await refused('s2', 's1', /not an earlier point of s1's history/); // newer to older
    await refused('o1', 'v', /not an earlier point of v's history \(v's lineage: v\)/);
    await refused('s2', 'c', /c's lineage: c <- s1 <- v/); // a sibling taken after c's branch point
    await expect(diffVolumes(store, 'nope', 'v')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // allowed: snapshot to later snapshot, snapshot to live, clone source to clone
    for (const [f, t] of [['s1', 's2'], ['s1', 'v'], ['s2', 'v'], ['s1', 'c']]) await expect(diffVolumes(store, f!, t!)).resolves.toEqual([]);
    expect(historyPoints(store.volumes, 'c').map((f) => f.name)).toEqual(['s1']);
    expect(historyPoints(store.volumes, 'v').map((f) => f.name)).toEqual(['s1', 's2']);
    expect(historyPoints(store.volumes, 's2').map((f) => f.name)).toEqual(['s1']);
    // Snapshots of a deleted volume stay two points of its history.
    await store.deleteVolume('c');
    await store.deleteVolume('v');
    await expect(diffVolumes(store, 's1', 's2')).resolves.toEqual([]);
    await refused('s2', 's1', /not an earlier point of s1's history \(s1's lineage: s1\)/);
  });
});

describe('history diff over large shared trees (tree-diff.ts)', () => {
  // Thousands of extents make trees several levels deep, so the walk really skips shared subtrees.
  // The diff must equal a block-by-block comparison of the two maps over the whole volume.
  const token = (e: { type: string; physical: number; offset: number }): number =>
    e.type === 'hole' || e.type === 'unwritten' ? -1 : e.type === 'inline' ? -2 : e.physical - e.offset;

  async function blockwise(store: ImageStore, from: string, to: string, blocks: number): Promise<Set<number>> {
    const tok = (name: string): number[] => {
      const out = new Array<number>(blocks).fill(-1);
      for (const e of store.mapper.extents(name)) for (let b = e.offset / B; b < (e.offset + e.length) / B; b++) out[b] = token(e);
      return out;
    };
    const a = tok(from);
    const b = tok(to);
    const differ = new Set<number>();
    for (let i = 0; i < blocks; i++) if (a[i] !== b[i]) differ.add(i);
    return differ;
  }

  async function touch(store: ImageStore, volume: string, block: number, intent: 'write' | 'trim' | 'zero' = 'write'): Promise<void> {
    const m = await store.begin(volume, block * B, B, intent);
    await store.end(m, B);
  }

  it.each([1, 2, 3])('seed %i: equals the blockwise comparison, for every pair of a deep history', async (seed) => {
    const blocks = 12_000;
    const store = await freshStore(64);
    await store.createVolume('v', blocks * B);
    for (let b = 0; b < blocks; b += 2) await touch(store, 'v', b); // ~6,000 separate extents
    let x = seed * 7919;
    const rand = (n: number): number => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x % n;
    };
    await store.snapshot('v', 's1');
    for (let i = 0; i < 40; i++) await touch(store, 'v', rand(blocks), rand(4) === 0 ? 'trim' : 'write');
    await store.snapshot('v', 's2');
    await store.clone('s2', 'c');
    for (let i = 0; i < 40; i++) await touch(store, 'c', rand(blocks));
    await store.snapshot('c', 'c1');
    for (let i = 0; i < 10; i++) await touch(store, 'v', rand(blocks), rand(2) === 0 ? 'zero' : 'write');
    await touch(store, 'c', rand(blocks));
    for (const [from, to] of [['s1', 's2'], ['s1', 'v'], ['s2', 'v'], ['s1', 'c1'], ['s2', 'c'], ['c1', 'c']] as const) {
      const ranges = await diffVolumes(store, from, to);
      const reported = new Set<number>();
      for (const r of ranges) for (let b = r.offset / B; b < (r.offset + r.length) / B; b++) reported.add(b);
      const truth = await blockwise(store, from, to, blocks);
      expect([...truth].filter((b) => !reported.has(b)), `${from} -> ${to}: blocks that differ reported clean`).toEqual([]);
      expect([...reported].filter((b) => !truth.has(b)), `${from} -> ${to}: blocks reported that do not differ`).toEqual([]);
      expect(truth.size, `${from} -> ${to}: the workload changed something`).toBeGreaterThan(0);
    }
  });
});
