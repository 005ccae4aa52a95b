// Scale benchmark for the image store (not a test): builds a volume with N separate extents
// (default 1,000,000), then measures lookup time, heap per extent, checkpoint size and the time to
// open the image again. Run: node --expose-gc scripts/bench/fs-scale.ts [N] [dir]
// Figures are recorded in docs/FS-SCALE.md.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createImageFile, openImageFile } from '../../src/fs/image-file.ts';

const N = Number(process.argv[2] ?? 1_000_000);
const dir = await mkdtemp(join(process.argv[3] ?? tmpdir(), 'iomapd-scale-'));
const path = join(dir, 'scale.img');
const B = 4096;
const gc = (globalThis as { gc?: () => void }).gc;
const heap = () => {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
};
const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;

try {
  const store = await createImageFile(path, { dataBytes: (N + 1024) * B });
  await store.createVolume('v', 2 * N * B);
  await store.commit();
  const heap0 = heap();
  let t = process.hrtime.bigint();
  // Every other logical block: physically contiguous, logically not, so no two extents merge.
  for (let i = 0; i < N; i++) {
    const m = await store.begin('v', 2 * i * B, B, 'write');
    await store.end(m, B);
    if (i % 65536 === 65535) await store.commit();
  }
  await store.commit();
  const buildMs = ms(t);
  const extents = store.volume('v').extents;
  const heap1 = heap();

  const LOOKUPS = 200_000;
  const rnd = Array.from({ length: LOOKUPS }, () => Math.floor(Math.random() * 2 * N) * B);
  t = process.hrtime.bigint();
  let mapped = 0;
  for (const pos of rnd) if (store.lookup('v', pos).type === 'mapped') mapped++;
  const lookupUs = (ms(t) * 1000) / LOOKUPS;
  t = process.hrtime.bigint();
  for (const pos of rnd.slice(0, 50_000)) {
    const m = await store.begin('v', pos, B, 'read');
    await store.end(m, 0);
  }
  const beginUs = (ms(t) * 1000) / 50_000;

  t = process.hrtime.bigint();
  await store.close(); // final checkpoint
  const closeMs = ms(t);

  const heapBeforeOpen = heap();
  t = process.hrtime.bigint();
  const again = await openImageFile(path, { readOnly: true });
  const openMs = ms(t);
  const heapOpen = heap() - heapBeforeOpen;
  const ckptBytes = again.superblock.checkpointBytes;
  t = process.hrtime.bigint();
  const report = again.verify();
  const checkMs = ms(t);
  await again.close();
  const fileBytes = (await stat(path)).blocks * 512;

  const fig = {
    extents,
    buildSeconds: +(buildMs / 1000).toFixed(1),
    lookupMicros: +lookupUs.toFixed(2),
    beginEndReadMicros: +beginUs.toFixed(2),
    heapBytesPerExtentBuilt: Math.round((heap1 - heap0) / extents),
    heapBytesPerExtentOpened: Math.round(heapOpen / extents),
    checkpointBytes: ckptBytes,
    checkpointBytesPerExtent: +(ckptBytes / extents).toFixed(1),
    closeCheckpointMs: Math.round(closeMs),
    openMs: Math.round(openMs),
    checkMs: Math.round(checkMs),
    checkErrors: report.errors.length,
    imageFileAllocatedBytes: fileBytes,
    mappedHitRate: +(mapped / LOOKUPS).toFixed(2),
    node: process.version,
  };
  console.log(JSON.stringify(fig, null, 2));
} finally {
  await rm(dir, { recursive: true, force: true });
}
