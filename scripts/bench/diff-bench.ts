// Benchmark for the history diff (not a test): a volume with N separate extents (default
// 1,000,000), snapshot s1, C of them rewritten (default 1,000, copy-on-write), snapshot s2, then
// the time of `diff s1 s2` and `diff s1 v`. The diff compares only the tree leaves FROM and TO do
// not share (src/fs/tree-diff.ts); the target is 50 ms for this shape.
// Run: node --expose-gc scripts/bench/diff-bench.ts [N] [C] [dir]. Figures go in docs/BACKUP.md.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diffVolumes, rangeBytes } from '../../src/fs/diff.ts';
import { createImageFile } from '../../src/fs/image-file.ts';
import type { ImageStore } from '../../src/fs/image-store.ts';

const N = Number(process.argv[2] ?? 1_000_000);
const C = Number(process.argv[3] ?? 1_000);
const RUNS = 5;
const dir = await mkdtemp(join(process.argv[4] ?? tmpdir(), 'iomapd-diff-'));
const B = 4096;
const ms = (t: bigint): number => Number(process.hrtime.bigint() - t) / 1e6;

/** Marks a block written without writing data: the bench measures metadata only. */
async function touch(store: ImageStore, pos: number): Promise<void> {
  const m = await store.begin('v', pos, B, 'write');
  await store.end(m, B);
}

try {
  const store = await createImageFile(join(dir, 'diff.img'), { dataBytes: (2 * N + 2 * C + 1024) * B });
  await store.createVolume('v', 2 * N * B);
  let t = process.hrtime.bigint();
  // Every other logical block: no two extents merge.
  for (let i = 0; i < N; i++) {
    await touch(store, 2 * i * B);
    if (i % 65536 === 65535) await store.commit();
  }
  await store.snapshot('v', 's1');
  const buildMs = ms(t);
  // C distinct extents rewritten, spread over the volume (copy-on-write moves each to new blocks).
  const step = Math.floor(N / C);
  for (let j = 0; j < C; j++) await touch(store, 2 * j * step * B);
  await store.snapshot('v', 's2');
  await touch(store, 2 * B); // one more change after s2, seen only by `diff s1 v`

  const time = async (from: string, to: string): Promise<{ best: number; median: number; ranges: number; bytes: number }> => {
    const times: number[] = [];
    let ranges = 0;
    let bytes = 0;
    for (let r = 0; r < RUNS; r++) {
      const t0 = process.hrtime.bigint();
      const d = await diffVolumes(store, from, to);
      times.push(ms(t0));
      ranges = d.length;
      bytes = rangeBytes(d);
    }
    times.sort((a, b) => a - b);
    return { best: times[0]!, median: times[Math.floor(RUNS / 2)]!, ranges, bytes };
  };
  const s1s2 = await time('s1', 's2');
  const s1v = await time('s1', 'v');
  console.log(JSON.stringify({ extents: store.volume('v').extents, changed: C, buildMs: Math.round(buildMs), runs: RUNS, 'diff s1 s2': s1s2, 'diff s1 v': s1v }, null, 2));
  if (s1s2.bytes !== C * B) throw new Error(`diff s1 s2 reported ${s1s2.bytes} bytes, expected ${C * B}`);
  await store.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
