// Scale benchmark for the image store (not a test): builds a volume with N separate extents
// (default 1,000,000), then measures lookup time, memory per extent (JS heap and typed-array
// backing stores apart), checkpoint bytes (whole and after a small change), snapshot and clone
// time, and the time to open the image again. Run: node --expose-gc scripts/bench/fs-scale.ts [N] [dir]
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
/** JS heap and typed-array backing stores (outside the heap), after a full collection. */
const heap = () => {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { used: m.heapUsed, buffers: m.arrayBuffers };
};
const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;

try {
  const store = await createImageFile(path, { dataBytes: (N + 4096) * B });
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
  // The whole map on disk: every node written once by this checkpoint.
  await store.checkpoint();
  const fullNodeBlocks = store.meta.nodeBlocks;

  // Small changes, then a checkpoint: only the changed nodes are written. Spread: 100 writes into
  // holes far apart (each dirties its own leaf, which splits, and the path above it). Clustered:
  // 1,000 writes into neighbouring holes (they share leaves).
  const changeThenCheckpoint = async (holes: number[]) => {
    for (const h of holes) {
      const m = await store.begin('v', (2 * h + 1) * B, B, 'write');
      await store.end(m, B);
    }
    await store.commit();
    const retiredBefore = store.meta.retiredNodes.length;
    const nodesBefore = store.meta.nodeBlocks;
    const t0 = process.hrtime.bigint();
    await store.checkpoint();
    const nodes = store.meta.nodeBlocks - nodesBefore + retiredBefore;
    return { bytes: nodes * B + store.superblock.checkpointBytes, ms: Math.round(ms(t0)) };
  };
  const spread = await changeThenCheckpoint(Array.from({ length: 100 }, (_, i) => Math.floor((i * N) / 100) + 7));
  const clustered = await changeThenCheckpoint(Array.from({ length: 1000 }, (_, i) => Math.floor(N / 2) + 3 + i));

  // Snapshot and clone of the whole volume, a write to the clone, and deleting both.
  t = process.hrtime.bigint();
  await store.snapshot('v', 'snap');
  const snapshotMs = ms(t);
  t = process.hrtime.bigint();
  await store.clone('snap', 'work');
  const cloneMs = ms(t);
  t = process.hrtime.bigint();
  const w = await store.begin('work', (N + 1) * B, B, 'write');
  await store.end(w, B);
  const firstCloneWriteMs = ms(t);
  t = process.hrtime.bigint();
  await store.deleteVolume('work');
  await store.deleteVolume('snap');
  const deleteMs = ms(t);

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
  const cpu0 = process.cpuUsage();
  const again = await openImageFile(path, { readOnly: true });
  const openMs = ms(t);
  // CPU time of this process (user + system) during open: less sensitive than wall time to other
  // load on the machine (it leaves out waiting for a core; the pread threads count).
  const cpu = process.cpuUsage(cpu0);
  const openCpuMs = (cpu.user + cpu.system) / 1000;
  const heapAfterOpen = heap();
  const ckptBytes = again.superblock.checkpointBytes;
  const metadataBytes = again.meta.nodeBlocks * B + ckptBytes;
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
    heapUsedBytesPerExtentBuilt: Math.round((heap1.used - heap0.used) / extents),
    arrayBufferBytesPerExtentBuilt: Math.round((heap1.buffers - heap0.buffers) / extents),
    heapUsedBytesPerExtentOpened: Math.round((heapAfterOpen.used - heapBeforeOpen.used) / extents),
    arrayBufferBytesPerExtentOpened: Math.round((heapAfterOpen.buffers - heapBeforeOpen.buffers) / extents),
    rootRecordBytes: ckptBytes,
    metadataBytesOnDisk: metadataBytes,
    metadataBytesPerExtent: +(metadataBytes / extents).toFixed(1),
    fullCheckpointNodeBlocks: fullNodeBlocks,
    checkpointBytesAfter100SpreadWrites: spread.bytes,
    checkpointMsAfter100SpreadWrites: spread.ms,
    checkpointBytesAfter1000ClusteredWrites: clustered.bytes,
    checkpointMsAfter1000ClusteredWrites: clustered.ms,
    snapshotMs: +snapshotMs.toFixed(2),
    cloneMs: +cloneMs.toFixed(2),
    firstCloneWriteMs: +firstCloneWriteMs.toFixed(2),
    deleteSnapshotAndCloneMs: +deleteMs.toFixed(2),
    closeCheckpointMs: Math.round(closeMs),
    openMs: Math.round(openMs),
    openCpuMs: Math.round(openCpuMs),
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
