// The seams of the image store (docs/STORE.md). The mapper (extent maps, begin/end, allocation,
// copy-on-write, pins), the volumes and the engine are backend-independent; the four pieces below
// are what a backend provides. The file image implements them over one Storage (data-area.ts,
// durability.ts, checkpoints.ts, superblock-io.ts); an object-store backend would implement them
// with log-structured segments, journal objects and a manifest advanced by compare-and-swap.
import type { IomapdError } from '../util/errors.ts';
import type { Run } from './extent.ts';
import type { Superblock } from './superblock.ts';

/**
 * Where volume data lives, addressed by the byte offsets that mappings carry (`physical`,
 * `cowPhysical`). Every call is bounds-checked (OUT_OF_RANGE). Writes are not durable until
 * Durability.syncData() or commit(); they are refused once the store is poisoned.
 */
export interface DataArea {
  /** Capacity in bytes. */
  readonly bytes: number;
  /** Whether readNow can ever succeed (the backend has a synchronous fast path). */
  readonly canReadNow: boolean;
  read(physical: number, buf: Buffer): Promise<void>;
  /** Fills buf now if the backend can without waiting; false (nothing done) otherwise. */
  readNow(physical: number, buf: Buffer): boolean;
  write(physical: number, buf: Buffer): Promise<void>;
}

/**
 * Makes applied metadata ops and written data durable. Ordering it keeps: data is made durable
 * before the ops that make it reachable (commit syncs data first); frees are released to the
 * allocator only once the op that freed them is durable (OpLog.markDurable).
 */
export interface Durability {
  /** Makes every op applied and every data write completed before the call durable (group commit). */
  commit(): Promise<void>;
  /** Makes completed data writes durable without committing metadata (the FUA shortcut). */
  syncData(): Promise<void>;
  /** Writes a checkpoint now (bounding replay) and makes every applied op durable. */
  checkpoint(): Promise<void>;
  /** Ops applied but not yet durable. */
  readonly uncommitted: number;
  /** STORAGE_POISONED once a sync or metadata write failed; null while healthy. */
  readonly failure: IomapdError | null;
  /** Journal ring bytes (0 for a backend without a ring) and how many of them hold live records. */
  readonly journalBytes: number;
  readonly journalUsed: number;
}

/**
 * Writes checkpoints, so replay stays bounded. The file backend writes the extent-tree nodes that
 * changed since the last one (tree-io.ts dirtyNodes) and a root record; a PreparedCheckpoint may
 * carry more than the fields below for the same implementation's write().
 */
export interface Checkpoints {
  /** The blocks holding the current checkpoint (check and space accounting). */
  readonly runs: readonly Run[];
  /**
   * Serializes the metadata now (one consistent state) into newly taken space. Fails with
   * NO_SPACE before any I/O, leaving everything as it was.
   */
  prepare(): PreparedCheckpoint;
  /** Writes a prepared checkpoint and makes it current; `journalStart` is where replay begins. */
  write(prepared: PreparedCheckpoint, journalStart: JournalStart): Promise<void>;
  /**
   * Blocks a checkpoint being written holds that are neither free nor in `runs` nor referenced
   * (its root record before it is current, the old one's after, replaced nodes until freed): a
   * check taken meanwhile counts them as in use. None when no checkpoint is being written.
   */
  inFlightRuns(): Run[];
}

export interface PreparedCheckpoint {
  readonly blob: Buffer;
  readonly runs: Run[];
  readonly generation: number;
}

export interface JournalStart {
  readonly head: number;
  readonly seq: number;
  readonly prevCrc: number;
}

/** The root record: which checkpoint is current and where the journal starts. */
export interface Superblocks {
  readonly current: Readonly<Superblock>;
  /** Replaces the root record durably (every copy, one at a time). */
  write(sb: Superblock): Promise<void>;
}
