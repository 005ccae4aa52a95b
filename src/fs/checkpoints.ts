// Checkpoints on the image file: the whole metadata, serialized synchronously (one consistent
// state), written copy-on-write into free data blocks, then made current by flipping the
// superblocks. The previous checkpoint's blocks are freed only after every copy points at the new
// one. The caller (durability.ts) syncs the data the checkpoint points to before write().
import { fail } from '../util/errors.ts';
import { checksum } from '../util/checksum.ts';
import type { Storage } from '../storage/storage.ts';
import { checkpointSize, encodeCheckpoint } from './checkpoint-codec.ts';
import { committedFree } from './committed-free.ts';
import type { Run } from './extent.ts';
import type { Checkpoints, JournalStart, PreparedCheckpoint, Superblocks } from './store-contract.ts';
import type { StoreState } from './store-state.ts';
import { MAX_CHECKPOINT_RUNS, type Superblock } from './superblock.ts';

export class FileCheckpoints implements Checkpoints {
  private readonly storage: Storage;
  private readonly superblocks: Superblocks;
  private readonly state: StoreState;

  constructor(storage: Storage, superblocks: Superblocks, state: StoreState) {
    this.storage = storage;
    this.superblocks = superblocks;
    this.state = state;
  }

  get runs(): readonly Run[] {
    return this.superblocks.current.checkpointRuns;
  }

  prepare(): PreparedCheckpoint {
    const { meta, alloc, blockSize } = this.state;
    const sb = this.superblocks.current;
    // Free in the committed view: the old checkpoint's blocks, pending frees, taken-not-linked runs.
    const extra = [...sb.checkpointRuns, ...alloc.pendingRuns(), ...alloc.takenRuns()];
    const bound = checkpointSize(meta, extra.length + 2 * MAX_CHECKPOINT_RUNS);
    // Fails with NO_SPACE before any I/O, so the store stays usable (the journal still works).
    const runs = this.takeRuns(Math.ceil(bound / blockSize));
    const generation = sb.generation + 1;
    const blob = encodeCheckpoint(meta, generation, committedFree(meta.free, extra));
    return { blob, runs, generation };
  }

  async write(prepared: PreparedCheckpoint, journalStart: JournalStart): Promise<void> {
    const B = this.state.blockSize;
    const old = this.superblocks.current;
    const { blob, runs, generation } = prepared;
    let at = 0;
    for (const r of runs) {
      if (at >= blob.length) break;
      const chunk = Buffer.alloc(r.len * B);
      blob.copy(chunk, 0, at, Math.min(blob.length, at + chunk.length));
      await this.storage.write(chunk, old.dataOffset + r.start * B);
      at += chunk.length;
    }
    await this.storage.sync();
    const sb: Superblock = {
      ...old,
      version: this.state.formatVersion,
      generation,
      journalStart: journalStart.head,
      journalSeq: journalStart.seq,
      journalPrevCrc: journalStart.prevCrc,
      checkpointBytes: blob.length,
      checkpointCrc: checksum(blob),
      checkpointRuns: runs,
    };
    await this.superblocks.write(sb);
    this.state.alloc.checkpointBlocks = runs.reduce((n, r) => n + r.len, 0);
    for (const r of old.checkpointRuns) this.state.meta.putFree(r.start, r.len);
  }

  /** Takes `blocks` blocks for a checkpoint in as few runs as the free space allows. */
  private takeRuns(blocks: number): Run[] {
    const meta = this.state.meta;
    const runs: Run[] = [];
    let need = blocks;
    while (need > 0) {
      // Checkpoints may use reserved space: metadata must always be writable.
      const hit = meta.free.seek(0);
      let best = hit;
      if (hit && hit.v.len < need) {
        for (const e of meta.free.entries()) if (!best || e.v.len > best.v.len) best = e;
      }
      if (!best || runs.length >= MAX_CHECKPOINT_RUNS) {
        for (const r of runs) meta.putFree(r.start, r.len);
        fail('NO_SPACE', 'no space left for a metadata checkpoint');
      }
      const len = Math.min(need, best.v.len);
      meta.takeFree(best.start, len);
      runs.push({ start: best.start, len });
      need -= len;
    }
    return runs;
  }
}
