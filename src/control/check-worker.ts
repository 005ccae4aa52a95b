// The worker thread of a served image's check (live-check.ts): decodes the copy of the metadata
// the daemon took and runs the offline checker on it, off the daemon's event loop. It answers one
// message and exits.
import { parentPort, workerData } from 'node:worker_threads';
import { verifyMetadata } from '../fs/check.ts';
import { decodeCheckpoint } from '../fs/checkpoint-codec.ts';
import type { Run } from '../fs/extent.ts';

export interface CheckJob {
  /** The metadata as a checkpoint blob (generation 0), encoded by the daemon. */
  readonly blob: Uint8Array;
  readonly blockSize: number;
  readonly dataBlocks: number;
  readonly checkpointRuns: readonly Run[];
  /** Blocks neither used nor free at the copy: allocations not yet linked, frees pending. */
  readonly transient: readonly Run[];
}

const job = workerData as CheckJob;
try {
  const blob = Buffer.from(job.blob.buffer, job.blob.byteOffset, job.blob.byteLength);
  const meta = decodeCheckpoint(blob, { blockSize: job.blockSize, dataBlocks: job.dataBlocks, generation: 0 });
  const report = verifyMetadata(meta, job.checkpointRuns, job.transient);
  parentPort!.postMessage({ report, freeBlocks: meta.freeBlocks });
} catch (err) {
  parentPort!.postMessage({ failed: (err as Error).message ?? String(err) });
}
