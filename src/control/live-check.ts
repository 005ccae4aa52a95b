// The check of a served image's metadata, consistent while the daemon keeps serving. Everything
// applied is committed first; then, in one synchronous step (nothing else runs on the event loop,
// so no request changes the metadata meanwhile), the metadata is copied: encoded as a checkpoint
// blob, with the blocks that are neither used nor free at that instant (allocations not yet
// linked, pending frees). A worker thread decodes the copy and runs the offline checker on it
// while requests go on. Only the copy holds requests up: about a quarter of checking in place.
//
// The copy is exact when the metadata is sound. When the worker finds a problem, or cannot decode
// the copy (the encoding assumes sorted, valid runs), or the free-block counter (which the blob
// does not carry) differs, the daemon checks its live metadata in place, holding requests for the
// whole check, so that the report names the damage as the offline check would.
import { Worker } from 'node:worker_threads';
import { type CheckReport, treeCensus } from '../fs/check.ts';
import { encodeCheckpoint } from '../fs/checkpoint-codec.ts';
import type { ImageCheckResult } from '../fs/image-file.ts';
import type { Run } from '../fs/extent.ts';
import type { ImageStore } from '../fs/image-store.ts';
import type { Metadata } from '../fs/state.ts';
import type { CheckJob } from './check-worker.ts';

export interface LiveCheckResult extends ImageCheckResult {
  /** How long requests were held: the copy, plus the in-place check when one was needed. */
  heldMs: number;
}

type WorkerAnswer = { report: CheckReport; freeBlocks: number } | { failed: string };

function answerReport(a: WorkerAnswer): CheckReport | null {
  return 'failed' in a ? null : a.report;
}

function runWorker(job: CheckJob): Promise<WorkerAnswer> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./check-worker.ts', import.meta.url), { workerData: job });
    worker.once('message', (m: WorkerAnswer) => {
      resolve(m);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the check worker exited (code ${code}) without an answer`)));
  });
}

function nodeBlockRuns(meta: Metadata): Run[] {
  const runs: Run[] = [];
  for (const node of treeCensus(meta).keys()) if (node.addr >= 0) runs.push({ start: node.addr, len: 1 });
  return runs;
}

export async function checkServedStore(store: ImageStore): Promise<LiveCheckResult> {
  if (!store.readOnly) await store.commit();
  let t = performance.now();
  const meta = store.meta;
  const free = [...meta.free.entries()].map((e) => ({ start: e.start, len: e.v.len }));
  const job: CheckJob = {
    blob: encodeCheckpoint(meta, 0, free),
    blockSize: meta.blockSize,
    dataBlocks: meta.dataBlocks,
    // The copy's maps are plain trees without disk addresses: the blocks the live tree nodes hold
    // (and those replaced since the last checkpoint) travel with it as in use.
    checkpointRuns: [...store.checkpointRuns, ...nodeBlockRuns(meta)],
    transient: [...store.transientRuns(), ...meta.retiredNodes.map((b) => ({ start: b, len: 1 }))],
  };
  const freeBlocks = meta.freeBlocks;
  let heldMs = performance.now() - t;
  const answer = await runWorker(job);
  const notes: string[] = [];
  let report: CheckReport;
  if ('failed' in answer || answer.report.errors.length > 0 || answer.freeBlocks !== freeBlocks) {
    t = performance.now();
    report = store.verify();
    heldMs += performance.now() - t;
    const why = 'failed' in answer ? `it did not decode: ${answer.failed}` : answer.report.errors.length > 0 ? answer.report.errors[0]! : `its free blocks ${answer.freeBlocks}, the live ${freeBlocks}`;
    notes.push(`served image: the copy of the metadata did not check clean (${why}), so the live metadata was checked in place`);
  } else {
    report = answer.report;
  }
  // A writable open rewrote damaged superblock copies; a read-only one still has them.
  if (store.readOnly) notes.unshift(...store.superblockProblems);
  notes.push(`served image: checked ${report === answerReport(answer) ? 'a copy of the metadata' : 'the live metadata'} after a commit; requests waited ${heldMs.toFixed(1)} ms`);
  return { ...report, notes: [...report.notes, ...notes], repaired: false, unreadable: false, heldMs };
}
