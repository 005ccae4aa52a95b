// One volume of an image as a BlockDevice: the server's view of the engine. Each request
// builds fresh state (L1); write-type requests pass the volume's write gate and take the range lock
// rounded out to allocation blocks (Z6) until their completion stage is done, then run the
// durability step outside the lock (D2-D4). Reads take no lock; the mapper pins what they read.
// A device gets the parts it works with (VolumeDeviceParts), never the engine or the store: it
// opens and closes nothing.
import type { SpaceReservation } from '../fs/allocator.ts';
import type { Mapper } from '../fs/mapper.ts';
import type { DataArea, Durability } from '../fs/store-contract.ts';
import type { VolumeFacts, Volumes } from '../fs/volumes.ts';
import type { Logger } from '../util/log.ts';
import { DEFAULT_BLOCK_SIZES, withMinimum, type MinBlockSize } from './block-sizes.ts';
import { isIomapdError } from '../util/errors.ts';
import { fullCapabilities, type BlockDevice, type BlockSizes, type DeviceCapabilities, type DeviceExtent, type MappingExtent, type WriteOptions, type ZeroOptions } from './block-device.ts';
import type { VolumeCounters } from './counters.ts';
import { allocationStatus, mappingStatus } from './block-status.ts';
import { HistoryStatus } from './history-status.ts';
import type { RangeLock } from './range-lock.ts';
import { readRange } from './read-path.ts';
import type { VolumeContext } from './volume-context.ts';
import type { WriteGate } from './write-gate.ts';
import { writeRange } from './write-path.ts';
import { planZero, zeroRange } from './zero-path.ts';

/** Everything a volume device works with. */
export interface VolumeDeviceParts {
  readonly mapper: Mapper;
  readonly data: DataArea;
  readonly durability: Durability;
  /** For the history contexts: lineage and the other volumes' facts. */
  readonly volumes: Volumes;
  /** The volume as it was when the device was made (a device has a fixed size). */
  readonly facts: VolumeFacts;
  /** Export read-only (a read-only volume, a snapshot, or an image opened read-only). */
  readonly readOnly: boolean;
  readonly gate: WriteGate;
  readonly lock: RangeLock;
  readonly counters: VolumeCounters;
  readonly log: Logger | null;
  /** The advertised minimum block size (`serve --min-block-size`; default 512). */
  readonly minimumBlock?: MinBlockSize;
}

export class VolumeDevice implements BlockDevice {
  readonly size: number;
  readonly readOnly: boolean;
  readonly blockSizes: BlockSizes;
  readonly capabilities: DeviceCapabilities = fullCapabilities(true);
  readonly name: string;
  /** qemu:dirty-bitmap:FROM and qemu:allocation-depth (history-status.ts). */
  readonly history: HistoryStatus;
  private readonly parts: VolumeDeviceParts;
  private readonly vc: VolumeContext;

  constructor(parts: VolumeDeviceParts) {
    this.parts = parts;
    this.name = parts.facts.name;
    this.size = parts.facts.size;
    this.readOnly = parts.readOnly;
    const sizes = { ...DEFAULT_BLOCK_SIZES, preferred: Math.min(parts.mapper.blockSize, 65536) };
    this.blockSizes = parts.minimumBlock === undefined ? sizes : withMinimum(sizes, parts.minimumBlock);
    this.history = new HistoryStatus(parts.mapper, parts.volumes, this.name);
    this.vc = { mapper: parts.mapper, data: parts.data, name: this.name, counters: parts.counters, log: parts.log };
  }

  get counters(): VolumeCounters {
    return this.vc.counters;
  }

  async read(into: Buffer, offset: number): Promise<void> {
    if (into.length === 0) return;
    await this.counted(readRange(this.vc, into, offset));
  }

  readNow(into: Buffer, offset: number): boolean {
    if (into.length === 0) return false;
    let done: boolean;
    try {
      // Lookup and read in one synchronous step: nothing can free the blocks in between.
      const { mapper, data } = this.parts;
      const physical = data.canReadNow ? mapper.mappedAt(this.name, offset, into.length) : -1;
      done = physical >= 0 && data.readNow(physical, into);
    } catch (err) {
      this.noteError(err);
      throw err;
    }
    if (done) {
      this.vc.counters.imageBytesRead += into.length;
      this.vc.counters.clientBytesRead += into.length;
    }
    return done;
  }

  async write(data: Buffer, offset: number, options: WriteOptions): Promise<void> {
    if (data.length === 0) return;
    const { pure } = await this.exclusive(offset, data.length, this.needForWrite(offset, data.length), (res) => writeRange(this.vc, data, offset, res));
    if (options.fua) await this.durable(pure);
  }

  async trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    await this.zeroOrTrim({ offset, length, intent: 'trim', noHole: false, fast: false }, options.fua);
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    await this.zeroOrTrim({ offset, length, intent: 'zero', noHole: !options.mayTrim, fast: options.fast }, options.fua);
  }

  private async zeroOrTrim(req: Parameters<typeof planZero>[1], fua: boolean): Promise<void> {
    if (req.length === 0) return;
    let plan: ReturnType<typeof planZero> | null = null;
    await this.exclusive(req.offset, req.length, () => (plan = planZero(this.vc, req)).blocksNeeded, (res) => zeroRange(this.vc, req, plan!, res));
    if (fua) await this.durable(false);
  }

  async flush(): Promise<void> {
    const c = this.vc.counters;
    c.flushes++;
    // FLUSH is image-wide (D5, D10): every write replied before it, on any volume, becomes durable.
    const committed = this.parts.durability.uncommitted > 0;
    await this.counted(this.parts.durability.commit());
    if (committed) c.journalCommits++;
  }

  /** CACHE is a hint; the engine keeps no data cache (K4), so there is nothing to prefetch. */
  async cache(_offset: number, _length: number): Promise<void> {}

  async blockStatus(offset: number, length: number): Promise<DeviceExtent[]> {
    return allocationStatus(this.vc, offset, length);
  }

  /** The iomapd:mapping context: each extent's mapping type and whether it is shared. */
  async mappingStatus(offset: number, length: number): Promise<MappingExtent[]> {
    return mappingStatus(this.vc, offset, length);
  }

  /** Nothing to release: the store belongs to whoever opened it, not to its devices. */
  async close(): Promise<void> {}

  /** Blocks a write may need to allocate: holes and shared blocks in its block-rounded range (L6, L11). */
  private needForWrite(offset: number, length: number): () => number {
    return () => {
      const B = this.parts.mapper.blockSize;
      const start = Math.floor(offset / B) * B;
      const end = Math.ceil((offset + length) / B) * B;
      let blocks = 0;
      for (const e of this.parts.mapper.extents(this.name, start, end)) {
        if (e.type === 'hole' || e.shared) blocks += Math.ceil((Math.min(e.offset + e.length, end) - Math.max(e.offset, start)) / B);
      }
      return blocks;
    };
  }

  /**
   * Runs a write-type request: write gate, block-rounded range lock, space reserved for what it may
   * allocate (failing with NO_SPACE before any change), released in every outcome.
   */
  private async exclusive<T>(offset: number, length: number, need: () => number, op: (res: SpaceReservation | undefined) => Promise<T>): Promise<T> {
    const { mapper, gate, lock } = this.parts;
    const B = mapper.blockSize;
    // Open gate and a free range (most writes): no promise to wait on for either.
    if (!gate.tryEnter()) await gate.enter();
    let unlock: (() => void) | null = null;
    let reservation: SpaceReservation | undefined;
    try {
      const start = Math.floor(offset / B) * B;
      const end = Math.ceil((offset + length) / B) * B;
      unlock = lock.tryAcquire(start, end) ?? (await lock.acquire(start, end));
      const blocks = need();
      if (blocks > 0) reservation = mapper.reserve(blocks);
      return await op(reservation);
    } catch (err) {
      this.noteError(err);
      throw err;
    } finally {
      reservation?.release();
      unlock?.();
      gate.leave();
    }
  }

  /** The FUA step, decided once here (D2-D4): data sync for pure overwrites, else a full commit. */
  private async durable(pure: boolean): Promise<void> {
    const c = this.vc.counters;
    if (pure) {
      await this.counted(this.parts.durability.syncData());
      c.fuaShortcuts++;
    } else {
      await this.counted(this.parts.durability.commit());
      c.journalCommits++;
    }
  }

  private async counted<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      this.noteError(err);
      throw err;
    }
  }

  private noteError(err: unknown): void {
    const c = this.vc.counters;
    c.errors++;
    if (isIomapdError(err, 'NO_SPACE')) c.allocationFailures++;
  }
}
