// Durability of an object-store image (docs/OBJECT-STORE.md, "Commit" and "Checkpoint").
//
// commit(): take the op log's pending ops and the staged index changes and seal the open segment,
// all synchronously; upload the sealed segments; create journal/E/k. One commit or checkpoint runs
// at a time and every caller arriving meanwhile is covered by the next one (group commit across
// connections). syncData() is a commit: here the index change that makes a block readable is
// metadata too.
//
// Failures: the taken work (journal body or prepared checkpoint) is kept and retried verbatim,
// first, by the next commit or checkpoint, so a lost answer to a PUT that landed is harmless and
// nothing newer is ever written before it. A store failure is STORE_UNAVAILABLE for the caller and
// poisons nothing: the next FLUSH retries. FENCED (writer-latch.ts) ends all writing for good.
import { IomapdError } from '../../util/errors.ts';
import type { Logger } from '../../util/log.ts';
import { ObjectConflict, type ObjectStore } from '../../storage/object-store.ts';
import type { OpLog } from '../op-log.ts';
import type { Durability, PreparedCheckpoint } from '../store-contract.ts';
import type { StoreState } from '../store-state.ts';
import { BlockIndex } from './block-index.ts';
import { journalKey } from './keys.ts';
import type { ObjectCheckpoints } from './object-checkpoints.ts';
import { decodeJournal, encodeJournal } from './object-codec.ts';
import type { ObjectDataArea } from './object-data-area.ts';
import type { SegmentLog } from './segment-log.ts';
import type { WriterLatch } from './writer-latch.ts';

/** Work taken from the op log and index whose upload has not finished (retried verbatim). */
type Pending =
  | { kind: 'journal'; key: string; body: Buffer; upto: number; writes: number }
  | { kind: 'checkpoint'; prepared: PreparedCheckpoint; seq: number; upto: number; writes: number };

export interface DurabilityParts {
  store: ObjectStore;
  state: StoreState;
  ops: OpLog;
  index: BlockIndex;
  segments: SegmentLog;
  data: ObjectDataArea;
  checkpoints: ObjectCheckpoints;
  writer: WriterLatch;
  log: Logger;
  epoch: number;
  /** The next journal sequence of this epoch. */
  nextSeq: number;
  /** A checkpoint follows once this many journal objects were written since the last one. */
  checkpointEvery: number;
}

export class ObjectDurability implements Durability {
  private readonly p: DurabilityParts;
  private committing: Promise<void> | null = null;
  private pending: Pending | null = null;
  private nextSeq: number;
  private writesDurable = 0;
  /** Journal objects written since the last checkpoint, and their bytes. */
  journalsSinceCheckpoint = 0;
  private journalBytesSince = 0;
  readonly journalBytes = 0;
  commits = 0;

  constructor(parts: DurabilityParts) {
    this.p = parts;
    this.nextSeq = parts.nextSeq;
  }

  get failure(): IomapdError | null {
    return this.p.writer.fenced;
  }

  get uncommitted(): number {
    return this.p.ops.uncommitted;
  }

  /** Bytes of journal objects since the last checkpoint (what replay would read). */
  get journalUsed(): number {
    return this.journalBytesSince;
  }

  /** The next journal sequence (GC: journals before the manifest's start are dead). */
  get journalSeq(): number {
    return this.nextSeq;
  }

  syncData(): Promise<void> {
    return this.commit();
  }

  async commit(): Promise<void> {
    const target = this.p.ops.appliedIndex;
    const writes = this.p.data.writesCompleted;
    while (this.p.ops.durableIndex < target || this.writesDurable < writes) {
      this.p.writer.refuse();
      if (this.committing) {
        await this.committing.catch(() => {});
        continue;
      }
      await this.exclusive(() => this.runCommit());
    }
    this.p.writer.refuse();
  }

  async checkpoint(): Promise<void> {
    this.p.state.writable();
    this.p.writer.refuse();
    while (this.committing) await this.committing.catch(() => {});
    await this.exclusive(() => this.writeCheckpoint());
  }

  /** Runs `job` as the one commit or checkpoint in progress. */
  private async exclusive(job: () => Promise<void>): Promise<void> {
    while (this.committing) await this.committing.catch(() => {});
    this.committing = job().finally(() => {
      this.committing = null;
    });
    await this.committing;
  }

  private async runCommit(): Promise<void> {
    this.p.state.writable();
    await this.finishPending();
    const { ops, index, data, segments } = this.p;
    const upto = ops.appliedIndex;
    const writes = data.writesCompleted;
    if (ops.pendingCount === 0 && index.stagedCount === 0) {
      this.writesDurable = Math.max(this.writesDurable, writes);
      return;
    }
    const taken = ops.take();
    const changes = BlockIndex.changeList(index.take());
    segments.seal();
    const seq = this.nextSeq++;
    const body = encodeJournal({ epoch: this.p.epoch, seq, sealedBy: null, ops: taken, changes });
    this.pending = { kind: 'journal', key: journalKey(this.p.epoch, seq), body, upto, writes };
    await this.finishPending();
    if (this.journalsSinceCheckpoint >= this.p.checkpointEvery) {
      // The commit is durable already; a checkpoint that fails now is retried by the next commit.
      await this.writeCheckpoint().catch((err) => this.p.log.warn({ err }, 'object image: checkpoint failed; retried with the next commit'));
    }
  }

  /** Called with the commit lock held: a checkpoint covering every op applied and write completed. */
  private async writeCheckpoint(): Promise<void> {
    await this.finishPending();
    const { ops, index, data, segments, checkpoints } = this.p;
    const upto = ops.appliedIndex;
    const writes = data.writesCompleted;
    ops.take();
    index.take();
    segments.seal();
    const prepared = checkpoints.prepare();
    this.pending = { kind: 'checkpoint', prepared, seq: this.nextSeq, upto, writes };
    await this.finishPending();
  }

  /** Uploads the taken work; on success makes it durable, on failure keeps it for the next try. */
  private async finishPending(): Promise<void> {
    const w = this.pending;
    if (!w) return;
    this.p.writer.refuse();
    try {
      await this.p.segments.uploadAll();
      if (w.kind === 'journal') await this.putJournal(w.key, w.body);
      else await this.p.checkpoints.write(w.prepared, { head: 0, seq: w.seq, prevCrc: 0 });
    } catch (err) {
      throw this.storeError(err);
    }
    this.pending = null;
    this.p.index.settle();
    this.p.ops.markDurable(w.upto);
    this.writesDurable = Math.max(this.writesDurable, w.writes);
    this.commits++;
    if (w.kind === 'journal') {
      this.journalsSinceCheckpoint++;
      this.journalBytesSince += w.body.length;
    } else {
      this.journalsSinceCheckpoint = 0;
      this.journalBytesSince = 0;
    }
  }

  /** Creates journal/E/k; a lost race means a newer opener sealed our chain (fenced). */
  private async putJournal(key: string, body: Buffer): Promise<void> {
    try {
      await this.p.store.putIfAbsent(key, body);
      return;
    } catch (err) {
      if (!(err instanceof ObjectConflict)) throw err;
    }
    const there = await this.p.store.get(key);
    if (there?.body.equals(body)) return; // an earlier attempt of ours landed
    let why = `${key} was taken by another writer`;
    try {
      if (there) {
        const j = decodeJournal(there.body, key);
        if (j.sealedBy !== null) why = `epoch ${j.sealedBy} sealed our journal chain at ${key}`;
      }
    } catch {
      // Unreadable: still not ours, so still fenced.
    }
    throw this.p.writer.fence(why);
  }

  private storeError(err: unknown): IomapdError {
    if (err instanceof IomapdError) return err;
    return new IomapdError('STORE_UNAVAILABLE', `object store: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}
