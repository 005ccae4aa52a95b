// Checkpoints on the image file (format version 3): the extent-tree nodes created or changed since
// the last checkpoint, each written once into a free block, plus a small root record (volumes with
// their tree roots, shared and free runs), all serialized synchronously (one consistent state) and
// made current by flipping the superblocks. Blocks of the previous root record and of nodes
// replaced since the last checkpoint are freed only after every superblock copy points at the new
// one. The caller (durability.ts) syncs the data the checkpoint points to before write().
import { fail } from '../util/errors.ts';
import { checksum } from '../util/checksum.ts';
import type { Storage } from '../storage/storage.ts';
import { committedFree } from './committed-free.ts';
import type { Run } from './extent.ts';
import { FORMAT_VERSION } from './format.ts';
import { encodeNode } from './node-codec.ts';
import { encodeRootRecord, rootRecordSize } from './root-record.ts';
import type { Checkpoints, JournalStart, PreparedCheckpoint, Superblocks } from './store-contract.ts';
import type { StoreState } from './store-state.ts';
import { MAX_CHECKPOINT_RUNS, type Superblock } from './superblock.ts';
import { dirtyNodes } from './tree-io.ts';

/** A prepared file checkpoint: the root record plus the node blocks to write first. */
interface FilePreparedCheckpoint extends PreparedCheckpoint {
  /** Runs of node blocks with their encoded contents (run.len blocks each). */
  readonly nodeWrites: Array<{ run: Run; bytes: Buffer }>;
  /** Node blocks the previous checkpoint used and this one does not: free once it is current. */
  readonly retired: number[];
}

/** A checkpoint between prepare() and the end of write(): what it holds outside the free map. */
interface Writing {
  /** The superblock current when it was prepared; another one current means the flip happened. */
  readonly old: Readonly<Superblock>;
  readonly runs: readonly Run[];
  readonly retired: readonly number[];
}

export class FileCheckpoints implements Checkpoints {
  private readonly storage: Storage;
  private readonly superblocks: Superblocks;
  private readonly state: StoreState;
  /** Set from prepare() until write() has freed the old blocks (kept if the write failed). */
  private writing: Writing | null = null;

  constructor(storage: Storage, superblocks: Superblocks, state: StoreState) {
    this.storage = storage;
    this.superblocks = superblocks;
    this.state = state;
  }

  get runs(): readonly Run[] {
    return this.superblocks.current.checkpointRuns;
  }

  inFlightRuns(): Run[] {
    const w = this.writing;
    if (w === null) return [];
    // Before the flip the new root record is not yet current; after it the old one is not any more.
    const rootRecord = this.superblocks.current === w.old ? w.runs : w.old.checkpointRuns;
    return [...rootRecord, ...w.retired.map((b) => ({ start: b, len: 1 }))];
  }

  prepare(): FilePreparedCheckpoint {
    const { meta, alloc, blockSize: B } = this.state;
    const sb = this.superblocks.current;
    const dirty = dirtyNodes([...meta.volumes.values()].map((v) => v.map.tree.root));
    const retired = meta.retiredNodes;
    // Free in the committed view: the old root record's blocks, replaced nodes, pending frees,
    // taken-not-linked runs.
    const extra = [...sb.checkpointRuns, ...retired.map((b) => ({ start: b, len: 1 })), ...alloc.pendingRuns(), ...alloc.takenRuns()];
    // Fails with NO_SPACE before any I/O, so the store stays usable (the journal still works).
    const nodeRuns = this.takeRuns(dirty.length, Infinity);
    let runs: Run[];
    try {
      const bound = rootRecordSize(meta, extra.length + 2 * MAX_CHECKPOINT_RUNS);
      runs = this.takeRuns(Math.ceil(bound / B), MAX_CHECKPOINT_RUNS);
    } catch (err) {
      for (const r of nodeRuns) meta.putFree(r.start, r.len);
      throw err;
    }
    const generation = sb.generation + 1;
    // Children come before parents in `dirty`, so a parent records its children's new blocks.
    const nodeWrites: Array<{ run: Run; bytes: Buffer }> = [];
    let i = 0;
    for (const run of nodeRuns) {
      const bytes = Buffer.alloc(run.len * B);
      for (let j = 0; j < run.len; j++, i++) {
        const node = dirty[i]!;
        node.addr = run.start + j;
        node.gen = generation;
        encodeNode(node, node.addr, generation, bytes.subarray(j * B, (j + 1) * B));
      }
      nodeWrites.push({ run, bytes });
    }
    meta.nodeBlocks += dirty.length;
    meta.retiredNodes = [];
    const blob = encodeRootRecord(meta, generation, committedFree(meta.free, extra));
    this.writing = { old: sb, runs, retired };
    return { blob, runs, generation, nodeWrites, retired };
  }

  async write(prepared: FilePreparedCheckpoint, journalStart: JournalStart): Promise<void> {
    const B = this.state.blockSize;
    const old = this.superblocks.current;
    const { blob, runs, generation } = prepared;
    for (const w of prepared.nodeWrites) await this.storage.write(w.bytes, old.dataOffset + w.run.start * B);
    let at = 0;
    for (const r of runs) {
      if (at >= blob.length) break;
      const chunk = Buffer.alloc(r.len * B);
      blob.copy(chunk, 0, at, Math.min(blob.length, at + chunk.length));
      await this.storage.write(chunk, old.dataOffset + r.start * B);
      at += chunk.length;
    }
    await this.storage.sync();
    // The first checkpoint of an older image upgrades it: this one is written in version 3.
    const version = Math.max(this.state.formatVersion, FORMAT_VERSION);
    this.state.formatVersion = version;
    const sb: Superblock = {
      ...old,
      version,
      generation,
      journalStart: journalStart.head,
      journalSeq: journalStart.seq,
      journalPrevCrc: journalStart.prevCrc,
      checkpointBytes: blob.length,
      checkpointCrc: checksum(blob),
      checkpointRuns: runs,
    };
    await this.superblocks.write(sb);
    const meta = this.state.meta;
    for (const r of old.checkpointRuns) meta.putFree(r.start, r.len);
    for (const b of prepared.retired) meta.putFree(b, 1);
    meta.nodeBlocks -= prepared.retired.length;
    this.writing = null;
    this.state.alloc.checkpointBlocks = runs.reduce((n, r) => n + r.len, 0) + meta.nodeBlocks;
  }

  /** Takes `blocks` blocks for a checkpoint in as few runs as the free space allows (at most maxRuns). */
  private takeRuns(blocks: number, maxRuns: number): Run[] {
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
      if (!best || runs.length >= maxRuns) {
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
