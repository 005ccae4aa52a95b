// Volumes of an image: create, delete, resize, snapshot, clone, and what callers may know about
// them. Each structural change is logged and committed before it returns (durable on return).
// Backend-independent: data moves only through the DataArea, durability through Durability.
//
// Facts (id, name, size, flags) and the allocation figures of info() cost O(1) (the extent map
// counts its entries and blocks), so a snapshot of a huge volume returns in O(1) too.
import { fail } from '../util/errors.ts';
import { ExtentKind, type Run } from './extent.ts';
import { INLINE_MAX, LINEAGE_FORMAT_VERSION, REQUIRE_TLS_FORMAT_VERSION, VolumeFlags } from './format.ts';
import type { OpLog } from './op-log.ts';
import { OpCode } from './ops.ts';
import { type Volume, validVolumeName } from './state.ts';
import type { DataArea, Durability } from './store-contract.ts';
import type { StoreState } from './store-state.ts';

/** What is known about a volume without walking its map. */
export interface VolumeFacts {
  id: number;
  name: string;
  size: number;
  readOnly: boolean;
  snapshot: boolean;
  inline: boolean;
  /** Served only to TLS clients; never exported by a server without TLS. */
  requireTls: boolean;
  /** The id of the volume it was snapshotted or cloned from; 0 for none or unknown. */
  origin: number;
}

/** Facts plus the allocation figures. */
export interface VolumeInfo extends VolumeFacts {
  extents: number;
  allocatedBytes: number;
}

export interface CreateVolumeOptions {
  readOnly?: boolean;
  /** Allocate the whole range now, UNWRITTEN (reads as zeros). */
  preallocate?: boolean;
  /** Serve the volume only to TLS clients. */
  requireTls?: boolean;
}

export class Volumes {
  private readonly state: StoreState;
  private readonly ops: OpLog;
  private readonly durability: Durability;
  private readonly data: DataArea;

  constructor(state: StoreState, ops: OpLog, durability: Durability, data: DataArea) {
    this.state = state;
    this.ops = ops;
    this.durability = durability;
    this.data = data;
  }

  /** The whole image is open read-only: every volume is served read-only. */
  get imageReadOnly(): boolean {
    return this.state.readOnly;
  }

  /** O(1): no map walk. NOT_FOUND if there is no such volume. */
  facts(name: string): VolumeFacts {
    return factsOf(this.state.volumeByName(name));
  }

  /** Every volume's facts, by id (O(volumes): no map walk). */
  allFacts(): VolumeFacts[] {
    return [...this.state.meta.volumes.values()].sort((a, b) => a.id - b.id).map(factsOf);
  }

  /**
   * The volume and its origins, newest first: `name`, the volume it was snapshotted or cloned
   * from, that one's origin, ... The chain ends at a volume with no origin or a deleted one.
   */
  lineage(name: string): VolumeFacts[] {
    const { volumes } = this.state.meta;
    const chain: VolumeFacts[] = [];
    for (let v = volumes.get(this.state.volumeByName(name).id); v; v = v.origin === 0 ? undefined : volumes.get(v.origin)) {
      chain.push(factsOf(v));
    }
    return chain;
  }

  /** Facts and allocation figures. */
  info(name: string): VolumeInfo {
    return this.infoOf(this.state.volumeByName(name));
  }

  list(): VolumeInfo[] {
    return [...this.state.meta.volumes.values()].sort((a, b) => a.id - b.id).map((v) => this.infoOf(v));
  }

  private infoOf(v: Volume): VolumeInfo {
    return { ...factsOf(v), extents: v.map.size, allocatedBytes: v.inline ? v.inline.length : v.map.blocks * this.state.blockSize };
  }

  /** Creates a volume; with preallocate, its whole range is allocated UNWRITTEN. Durable on return. */
  async create(name: string, size: number, opts: CreateVolumeOptions = {}): Promise<VolumeInfo> {
    const { alloc, meta } = this.state;
    this.state.writable();
    this.checkName(name);
    const inline = this.checkSize(size);
    if (opts.requireTls) await this.raiseFormat(REQUIRE_TLS_FORMAT_VERSION);
    const id = meta.nextVolumeId;
    const flags = (opts.readOnly ? VolumeFlags.READ_ONLY : 0) | (inline ? VolumeFlags.INLINE : 0) | (opts.requireTls ? VolumeFlags.REQUIRE_TLS : 0);
    if (opts.preallocate && !inline) {
      const blocks = size / this.state.blockSize;
      const res = alloc.reserve(blocks); // NO_SPACE here changes nothing
      this.ops.log({ code: OpCode.VOL_CREATE, id, flags, size, name });
      let pos = 0;
      let hint: number | null = null;
      while (pos < blocks) {
        const run: Run = alloc.allocate(blocks - pos, hint, res)!;
        this.ops.log({ code: OpCode.MAP, vol: id, start: pos, len: run.len, kind: ExtentKind.UNWRITTEN, phys: run.start });
        alloc.settle(run, run.len);
        pos += run.len;
        hint = run.start + run.len;
      }
      res.release();
    } else {
      this.ops.log({ code: OpCode.VOL_CREATE, id, flags, size, name });
    }
    await this.durability.commit();
    return this.info(name);
  }

  async delete(name: string): Promise<void> {
    this.state.writable();
    const v = this.state.volumeByName(name);
    this.ops.log({ code: OpCode.VOL_DELETE, id: v.id });
    await this.durability.commit();
  }

  /** Grows or shrinks a volume. An inline volume grown past the inline limit moves to a block. */
  async resize(name: string, size: number): Promise<VolumeInfo> {
    this.state.writable();
    const v = this.state.volumeByName(name);
    const inline = this.checkSize(size);
    if (v.inline && !inline) {
      let phys: number | null = null;
      if (v.inline.length > 0) {
        const { alloc, blockSize } = this.state;
        const run = alloc.allocate(1, null);
        if (!run) fail('NO_SPACE', 'no space to move inline data to a block');
        const block = Buffer.alloc(blockSize);
        v.inline.copy(block);
        try {
          await this.data.write(run.start * blockSize, block);
        } catch (err) {
          alloc.settle(run, 0);
          throw err;
        }
        alloc.settle(run, 1);
        phys = run.start;
      }
      this.ops.log({ code: OpCode.UNINLINE, vol: v.id, size, phys });
    } else if (!v.inline && inline) {
      fail('BAD_ARGUMENT', `a block-mapped volume cannot shrink to ${INLINE_MAX} bytes or less`);
    } else {
      this.ops.log({ code: OpCode.VOL_RESIZE, id: v.id, size });
    }
    await this.durability.commit();
    return this.info(name);
  }

  /** Marks a volume as served only to TLS clients, or clears the mark. Durable on return. */
  async setRequireTls(name: string, on: boolean): Promise<VolumeInfo> {
    this.state.writable();
    this.state.volumeByName(name);
    await this.raiseFormat(REQUIRE_TLS_FORMAT_VERSION);
    // Looked up again after the checkpoint: the volume may have gone meanwhile.
    const v = this.state.volumeByName(name);
    this.ops.log({ code: OpCode.VOL_SET_FLAGS, id: v.id, flags: on ? VolumeFlags.REQUIRE_TLS : 0 });
    await this.durability.commit();
    return this.info(name);
  }

  /**
   * Makes the superblock record at least `version` before an op that needs it is logged: a
   * checkpoint carries the new version, and it is durable before the op can be.
   */
  private async raiseFormat(version: number): Promise<void> {
    if (this.state.formatVersion >= version) return;
    this.state.formatVersion = version;
    await this.durability.checkpoint();
  }

  /** A read-only snapshot sharing every block of `source`. */
  snapshot(source: string, name: string): Promise<VolumeInfo> {
    return this.copy(source, name, VolumeFlags.READ_ONLY | VolumeFlags.SNAPSHOT);
  }

  /** A writable clone sharing every block of `source` (usually a snapshot). */
  clone(source: string, name: string): Promise<VolumeInfo> {
    return this.copy(source, name, 0);
  }

  private async copy(source: string, name: string, flags: number): Promise<VolumeInfo> {
    this.state.writable();
    this.state.volumeByName(source);
    this.checkName(name);
    // Checkpoints record origins from here on (checkpoint version 2): old releases must refuse.
    await this.raiseFormat(LINEAGE_FORMAT_VERSION);
    // Looked up again after the checkpoint: the source may have gone meanwhile.
    const src = this.state.volumeByName(source);
    this.checkName(name);
    // A copy holds the same data as its source, so it keeps the source's TLS requirement.
    const tls = src.flags & VolumeFlags.REQUIRE_TLS;
    this.ops.log({ code: OpCode.VOL_SNAPSHOT, src: src.id, id: this.state.meta.nextVolumeId, flags: flags | tls, name });
    await this.durability.commit();
    return this.info(name);
  }

  private checkName(name: string): void {
    if (!validVolumeName(name)) fail('BAD_ARGUMENT', `bad volume name ${JSON.stringify(name)}`);
    if (this.state.meta.byName.has(name)) fail('ALREADY_EXISTS', `volume ${JSON.stringify(name)} already exists`);
  }

  /** Validates a volume size; true when a volume of that size is inline. */
  private checkSize(size: number): boolean {
    if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) {
      fail('BAD_ARGUMENT', 'a volume size must be a positive multiple of 512 bytes');
    }
    if (size <= INLINE_MAX) return true;
    const B = this.state.blockSize;
    if (size % B !== 0) fail('BAD_ARGUMENT', `a volume larger than ${INLINE_MAX} bytes must be a multiple of the block size (${B})`);
    return false;
  }
}

function factsOf(v: Volume): VolumeFacts {
  return {
    id: v.id,
    name: v.name,
    size: v.size,
    readOnly: (v.flags & VolumeFlags.READ_ONLY) !== 0,
    snapshot: (v.flags & VolumeFlags.SNAPSHOT) !== 0,
    inline: v.inline !== null,
    requireTls: (v.flags & VolumeFlags.REQUIRE_TLS) !== 0,
    origin: v.origin,
  };
}
