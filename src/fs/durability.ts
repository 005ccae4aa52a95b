// Durability for the file image: group commit of the op log into the journal ring, the data group
// sync, checkpoints when the ring fills, and the poison latch (style habit 10).
//
// commit(): sync the data (so every block a pending op makes reachable is on disk first), write
// the pending ops as one journal transaction, sync. Concurrent callers share commits. A ring
// without room for the transaction is emptied by a checkpoint that covers the same ops.
//
// Failures: a failed sync, journal or checkpoint write leaves what is on disk unknown, so the
// latch refuses every later write with STORAGE_POISONED; the caller that hit the failure still
// gets the real error (IO or NO_SPACE). A checkpoint that finds no space fails before any I/O and
// leaves the store usable.
import { IomapdError } from '../util/errors.ts';
import type { GroupSync } from '../storage/group-sync.ts';
import type { PoisonLatch } from '../storage/poison-latch.ts';
import type { Journal } from './journal.ts';
import type { OpLog } from './op-log.ts';
import type { Checkpoints, Durability } from './store-contract.ts';
import type { StoreState } from './store-state.ts';

export class FileDurability implements Durability {
  private readonly latch: PoisonLatch;
  private readonly state: StoreState;
  private readonly ops: OpLog;
  private readonly journal: Journal;
  private readonly checkpoints: Checkpoints;
  private readonly dataSync: GroupSync;
  /** The commit or checkpoint in progress (one at a time). */
  private committing: Promise<void> | null = null;

  constructor(latch: PoisonLatch, state: StoreState, ops: OpLog, journal: Journal, checkpoints: Checkpoints, dataSync: GroupSync) {
    this.latch = latch;
    this.state = state;
    this.ops = ops;
    this.journal = journal;
    this.checkpoints = checkpoints;
    this.dataSync = dataSync;
  }

  get failure(): IomapdError | null {
    return this.latch.failure;
  }

  get uncommitted(): number {
    return this.ops.uncommitted;
  }

  get journalBytes(): number {
    return this.journal.size;
  }

  get journalUsed(): number {
    return this.journal.used;
  }

  /** Overlapping callers share fdatasyncs (group commit for data, storage/group-sync.ts). */
  syncData(): Promise<void> {
    return this.dataSync.sync();
  }

  async commit(): Promise<void> {
    const target = this.ops.appliedIndex;
    while (this.ops.durableIndex < target) {
      this.latch.refuseIfPoisoned();
      if (this.committing) {
        await this.committing.catch(() => {});
        continue;
      }
      this.committing = this.runCommit().finally(() => {
        this.committing = null;
      });
      await this.committing;
    }
    this.latch.refuseIfPoisoned();
    // Pure overwrites change no metadata, but a commit (FLUSH) must still cover their data.
    if (this.dataSync.unsynced) await this.dataSync.sync();
  }

  private async runCommit(): Promise<void> {
    this.state.writable();
    const upto = this.ops.appliedIndex;
    const ops = this.ops.take();
    try {
      const planned = this.journal.plan(ops);
      if (!planned) {
        // The ring is full: a checkpoint covers these ops (and the ring starts over).
        this.ops.restore(ops);
        await this.writeCheckpoint();
        return;
      }
      if (this.dataSync.unsynced) await this.dataSync.sync();
      try {
        await this.journal.write(planned);
        await this.latch.sync();
      } catch (err) {
        // These ops have left the log and what reached the journal is unknown, so this poisons
        // the store even for ENOSPC (a sparse image file on a full filesystem): never retry or guess.
        throw this.latch.poison(err);
      }
      this.ops.markDurable(upto);
      if (this.journal.used > this.journal.size / 2) {
        await this.writeCheckpoint().catch((err) => {
          if (!this.noSpaceBeforeIo(err)) throw err;
        });
      }
    } catch (err) {
      // A checkpoint that found no space wrote nothing: the store stays usable.
      if (this.noSpaceBeforeIo(err)) throw err;
      throw this.latch.poison(err);
    }
  }

  private noSpaceBeforeIo(err: unknown): boolean {
    return err instanceof IomapdError && err.code === 'NO_SPACE' && !this.latch.poisoned;
  }

  async checkpoint(): Promise<void> {
    this.state.writable();
    while (this.committing) await this.committing.catch(() => {});
    this.committing = this.writeCheckpoint().finally(() => {
      this.committing = null;
    });
    await this.committing;
  }

  /** A checkpoint covering every op applied so far; the journal ring starts over behind it. */
  private async writeCheckpoint(): Promise<void> {
    // Synchronous from prepare to the captures: the checkpoint holds exactly ops up to `upto`.
    const prepared = this.checkpoints.prepare();
    try {
      const upto = this.ops.appliedIndex;
      const covered = this.ops.pendingCount;
      const start = { ...this.journal.pos };
      const mark = this.dataSync.completed; // writes completed before this sync starts
      await this.latch.sync();
      this.dataSync.markSynced(mark);
      await this.checkpoints.write(prepared, start);
      this.journal.truncate();
      this.ops.dropCovered(covered);
      this.ops.markDurable(upto);
    } catch (err) {
      throw this.latch.poison(err);
    }
  }
}
