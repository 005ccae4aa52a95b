// The in-memory metadata of an image: volumes with their extent maps, the shared-refcount table
// and free space. `apply` is the only way it changes, both live and during journal replay, so the
// two can never disagree.
//
// Reference counting: a used physical block has count 1 unless the shared table says otherwise
// (count >= 2); a block with count 0 is free, pending free, reserved or holds the checkpoint.
// In live mode the allocator has already taken a MAP's new blocks out of free space; in replay mode
// apply takes them itself. Blocks whose count drops to 0 are handed to `freed`, which defers their
// reuse (live) or frees them at once (replay).
//
// Snapshots share tree nodes (btree.ts), so counts are lazy, as in btrfs: the count of a block is
// the number of distinct extent-map LEAVES pointing to it, and a block is shared when its count
// says so OR a node on the path to it has several holders. A snapshot takes a reference to its
// source's root (O(1)); the first change under a shared leaf copies it, and the copy adds one
// reference to each block it points to, after which that leaf's counts are exact and the mapper's
// copy-on-write works as before. Deleting a volume releases only the nodes nobody else holds.
import { IomapdError } from '../util/errors.ts';
import type { TreeHooks } from './btree.ts';
import { type Extent, ExtentKind, type FreeRun, type SharedRun, extentOps, freeOps, sharedOps } from './extent.ts';
import { INLINE_MAX, MAX_NAME_BYTES, SETTABLE_VOLUME_FLAGS, VolumeFlags } from './format.ts';
import { type Op, OpCode } from './ops.ts';
import { RangeMap } from './range-map.ts';
import { BTree } from './btree.ts';

export interface Volume {
  readonly id: number;
  name: string;
  /** Bytes. A multiple of the block size unless the volume is inline. */
  size: number;
  flags: number;
  /** The volume this one was snapshotted or cloned from (0: none); it may be gone since. */
  origin: number;
  map: RangeMap<Extent>;
  /** The data of an inline volume (length <= size); null for a block-mapped volume. */
  inline: Buffer | null;
}

export type ApplyMode = 'live' | 'replay';

function invalid(msg: string): IomapdError {
  return new IomapdError('CORRUPT', `invalid metadata operation: ${msg}`);
}

export function validVolumeName(name: string): boolean {
  return (
    name.length > 0 &&
    Buffer.byteLength(name, 'utf8') <= MAX_NAME_BYTES &&
    !/[\u0000-\u001f\u007f/]/.test(name)
  );
}

export class Metadata {
  readonly blockSize: number;
  readonly dataBlocks: number;
  readonly volumes = new Map<number, Volume>();
  readonly byName = new Map<string, Volume>();
  nextVolumeId = 1;
  shared: RangeMap<SharedRun>;
  free: RangeMap<FreeRun>;
  freeBlocks = 0;
  /** Told when blocks go from 2 references to 1 (live mode: they stay shared until durable). */
  onUnshare: ((start: number, len: number) => void) | null = null;
  /** Tag of the live op being applied (0 in replay): a node unshared by it stays shared until durable. */
  liveTag = 0;
  /** Disk blocks of tree nodes changed or released since the last checkpoint (free after the next). */
  retiredNodes: number[] = [];
  /** Disk blocks holding the tree nodes of the current checkpoint. */
  nodeBlocks = 0;
  /** The extent maps' tree hooks: lazy block refcounts and node retirement. */
  readonly treeHooks: TreeHooks<Extent>;
  private freedNow: (start: number, len: number) => void = () => {
    throw invalid('blocks freed outside an operation');
  };

  constructor(blockSize: number, dataBlocks: number) {
    this.blockSize = blockSize;
    this.dataBlocks = dataBlocks;
    this.shared = new RangeMap(sharedOps);
    this.free = new RangeMap(freeOps);
    this.treeHooks = {
      leafCopied: (vals) => {
        for (const e of vals) this.incRef(e.phys, e.len);
      },
      leafFreed: (vals) => {
        for (const e of vals) this.decRef(e.phys, e.len, this.freedNow);
      },
      retired: (addr) => {
        this.retiredNodes.push(addr);
      },
      unshared: (node) => {
        if (this.liveTag > 0) node.held = this.liveTag;
      },
    };
  }

  /** An empty extent map wired to this metadata's refcounts. */
  newMap(): RangeMap<Extent> {
    return new RangeMap(extentOps, new BTree(extentOps, this.treeHooks));
  }

  /** A fresh image: every data block free. */
  static empty(blockSize: number, dataBlocks: number): Metadata {
    const m = new Metadata(blockSize, dataBlocks);
    if (dataBlocks > 0) m.putFree(0, dataBlocks);
    return m;
  }

  volumeBlocks(v: Volume): number {
    return v.inline ? 0 : v.size / this.blockSize;
  }

  // ---- free space ----

  /** Returns [start, start+len) to free space. The range must not be free already. */
  putFree(start: number, len: number): void {
    this.free.insert(start, { len });
    this.freeBlocks += len;
  }

  /** Takes [start, start+len) out of free space; false (and no change) unless all of it is free. */
  takeFree(start: number, len: number): boolean {
    const hit = this.free.covering(start);
    if (!hit || hit.start + hit.v.len < start + len) return false;
    this.free.remove(start, len);
    this.freeBlocks -= len;
    return true;
  }

  // ---- reference counts ----

  refCount(block: number): number {
    const s = this.shared.covering(block);
    if (s) return s.v.count;
    return this.free.covering(block) ? 0 : 1;
  }

  private incRef(start: number, len: number): void {
    const end = start + len;
    const parts = this.shared.remove(start, len);
    let pos = start;
    for (const p of parts) {
      if (p.start > pos) this.shared.insert(pos, { len: p.start - pos, count: 2 });
      this.shared.insert(p.start, { len: p.v.len, count: p.v.count + 1 });
      pos = p.start + p.v.len;
    }
    if (pos < end) this.shared.insert(pos, { len: end - pos, count: 2 });
  }

  private decRef(start: number, len: number, freed: (start: number, len: number) => void): void {
    const end = start + len;
    const parts = this.shared.remove(start, len);
    let pos = start;
    for (const p of parts) {
      if (p.start > pos) freed(pos, p.start - pos);
      if (p.v.count > 2) this.shared.insert(p.start, { len: p.v.len, count: p.v.count - 1 });
      else this.onUnshare?.(p.start, p.v.len);
      pos = p.start + p.v.len;
    }
    if (pos < end) freed(pos, end - pos);
  }

  // ---- the one mutator ----

  private vol(id: number): Volume {
    const v = this.volumes.get(id);
    if (!v) throw invalid(`no volume ${id}`);
    return v;
  }

  private checkNewName(name: string): void {
    if (!validVolumeName(name)) throw invalid(`bad volume name ${JSON.stringify(name)}`);
    if (this.byName.has(name)) throw invalid(`volume ${name} exists`);
  }

  private checkSize(size: number, inline: boolean): void {
    const ok = inline
      ? size > 0 && size % 512 === 0 && size <= INLINE_MAX
      : size > 0 && size % this.blockSize === 0;
    if (!Number.isSafeInteger(size) || !ok) throw invalid(`bad volume size ${size}`);
  }

  /**
   * Applies one operation. Every check happens before any change, so an invalid op changes
   * nothing. `freed` receives physical ranges whose reference count reached zero.
   */
  apply(op: Op, mode: ApplyMode, freed: (start: number, len: number) => void): void {
    this.freedNow = freed;
    switch (op.code) {
      case OpCode.VOL_CREATE: {
        if (this.volumes.has(op.id)) throw invalid(`volume id ${op.id} exists`);
        this.checkNewName(op.name);
        const inline = (op.flags & VolumeFlags.INLINE) !== 0;
        this.checkSize(op.size, inline);
        this.addVolume({
          id: op.id,
          name: op.name,
          size: op.size,
          flags: op.flags,
          origin: 0,
          map: this.newMap(),
          inline: inline ? Buffer.alloc(0) : null,
        });
        return;
      }
      case OpCode.VOL_DELETE: {
        const v = this.vol(op.id);
        v.map.drop();
        this.volumes.delete(v.id);
        this.byName.delete(v.name);
        return;
      }
      case OpCode.VOL_RESIZE: {
        const v = this.vol(op.id);
        this.checkSize(op.size, v.inline !== null);
        if (v.inline) {
          if (v.inline.length > op.size) v.inline = Buffer.from(v.inline.subarray(0, op.size));
        } else {
          const oldBlocks = this.volumeBlocks(v);
          const newBlocks = op.size / this.blockSize;
          if (newBlocks < oldBlocks) {
            for (const r of v.map.remove(newBlocks, oldBlocks - newBlocks)) this.decRef(r.v.phys, r.v.len, freed);
          }
        }
        v.size = op.size;
        return;
      }
      case OpCode.VOL_SNAPSHOT: {
        const src = this.vol(op.src);
        if (this.volumes.has(op.id)) throw invalid(`volume id ${op.id} exists`);
        this.checkNewName(op.name);
        const inlineFlag = src.inline ? VolumeFlags.INLINE : 0;
        this.addVolume({
          id: op.id,
          name: op.name,
          size: src.size,
          flags: (op.flags & ~VolumeFlags.INLINE) | inlineFlag,
          origin: src.id,
          map: src.map.clone(),
          inline: src.inline ? Buffer.from(src.inline) : null,
        });
        return;
      }
      case OpCode.MAP: {
        const v = this.vol(op.vol);
        if (v.inline) throw invalid(`MAP on inline volume ${v.id}`);
        const blocks = this.volumeBlocks(v);
        if (op.len <= 0 || op.start + op.len > blocks) throw invalid(`MAP outside volume ${v.id}`);
        if (op.kind !== 0) {
          if (op.phys + op.len > this.dataBlocks) throw invalid('MAP outside data area');
          if (mode === 'replay' && !this.takeFree(op.phys, op.len)) throw invalid('MAP of blocks in use');
        }
        const ext: Extent | null = op.kind === 0 ? null : { len: op.len, kind: op.kind, phys: op.phys };
        for (const r of v.map.replace(op.start, op.len, ext)) this.decRef(r.v.phys, r.v.len, freed);
        return;
      }
      case OpCode.SET_KIND: {
        const v = this.vol(op.vol);
        if (v.inline) throw invalid(`SET_KIND on inline volume ${v.id}`);
        const end = op.start + op.len;
        if (op.len <= 0 || end > this.volumeBlocks(v)) throw invalid('SET_KIND outside volume');
        let covered = 0;
        for (const e of v.map.overlapping(op.start, end)) {
          covered += Math.min(end, e.start + e.v.len) - Math.max(op.start, e.start);
        }
        if (covered !== op.len) throw invalid('SET_KIND over a hole');
        for (const p of v.map.remove(op.start, op.len)) {
          v.map.insert(p.start, { len: p.v.len, kind: op.kind, phys: p.v.phys });
        }
        v.map.rejoinAt(op.start);
        v.map.rejoinAt(end);
        return;
      }
      case OpCode.INLINE_WRITE: {
        const v = this.vol(op.vol);
        if (!v.inline) throw invalid(`INLINE_WRITE on block volume ${v.id}`);
        const end = op.offset + op.data.length;
        if (end > v.size) throw invalid('INLINE_WRITE past the end');
        if (end > v.inline.length) {
          const grown = Buffer.alloc(end);
          v.inline.copy(grown);
          v.inline = grown;
        }
        op.data.copy(v.inline, op.offset);
        return;
      }
      case OpCode.UNINLINE: {
        const v = this.vol(op.vol);
        if (!v.inline) throw invalid(`UNINLINE of block volume ${v.id}`);
        this.checkSize(op.size, false);
        if (op.phys !== null) {
          if (op.phys + 1 > this.dataBlocks) throw invalid('UNINLINE outside data area');
          if (mode === 'replay' && !this.takeFree(op.phys, 1)) throw invalid('UNINLINE to blocks in use');
        }
        v.inline = null;
        v.flags &= ~VolumeFlags.INLINE;
        v.size = op.size;
        if (op.phys !== null) v.map.insert(0, { len: 1, kind: ExtentKind.MAPPED, phys: op.phys });
        return;
      }
      case OpCode.VOL_SET_FLAGS: {
        const v = this.vol(op.id);
        if ((op.flags & ~SETTABLE_VOLUME_FLAGS) !== 0) throw invalid(`VOL_SET_FLAGS of fixed flags ${op.flags}`);
        v.flags = (v.flags & ~SETTABLE_VOLUME_FLAGS) | op.flags;
        return;
      }
    }
  }

  /** Adds a decoded or rebuilt volume; its map's tree reports to this metadata. */
  addVolume(v: Volume): void {
    v.map.tree.hooks = this.treeHooks;
    this.volumes.set(v.id, v);
    this.byName.set(v.name, v);
    if (v.id >= this.nextVolumeId) this.nextVolumeId = v.id + 1;
  }
}
