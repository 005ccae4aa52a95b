// Benchmark (not a test) for `iomapd check` on a served image: builds a volume of N separate
// extents (default 1,000,000) as scripts/bench/fs-scale.ts does, serves it (ServedImage), and
// times the live check (src/control/live-check.ts): how long it held every request (the copy of
// the metadata) and how long the whole op took (commit, copy, the worker's decode and check).
// Interleaved with it, A/B, the check in place (the store's verify(): what requests would wait if
// the daemon checked its live metadata directly). Each round first applies a few hundred writes,
// so the commit has work. Run: node scripts/bench/served-check.ts [N] [dir]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServedImage } from '../../src/control/served-image.ts';
import { createImageFile } from '../../src/fs/image-file.ts';

const N = Number(process.argv[2] ?? 1_000_000);
const ROUNDS = 5;
const dir = await mkdtemp(join(process.argv[3] ?? tmpdir(), 'iomapd-served-check-'));
const B = 4096;
try {
  const store = await createImageFile(join(dir, 'scale.img'), { dataBytes: (N + 4096) * B });
  await store.createVolume('v', 2 * N * B);
  await store.commit();
  // Every other logical block: physically contiguous, logically not, so no two extents merge.
  for (let i = 0; i < N; i++) {
    const m = await store.begin('v', 2 * i * B, B, 'write');
    await store.end(m, B);
    if (i % 65536 === 65535) await store.commit();
  }
  await store.commit();
  const served = new ServedImage(store);
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < 300; i++) {
      const m = await store.begin('v', (2 * ((r * 300 + i) % N) + 1) * B, B, 'write');
      await store.end(m, B);
    }
    const t = performance.now();
    const report = await served.check();
    const totalMs = Math.round(performance.now() - t);
    const u = performance.now();
    const inPlace = store.verify();
    const inPlaceMs = Math.round(performance.now() - u);
    rounds.push({ heldMs: Math.round(report.heldMs), totalMs, inPlaceMs, extents: report.extents, errors: report.errors.length + inPlace.errors.length });
  }
  await served.close();
  console.log(JSON.stringify({ extents: N, rounds }, null, 1));
} finally {
  await rm(dir, { recursive: true, force: true });
}
