// A raw file or block device served as it is: byte N of the export is byte N of the file. A block
// device over the storage stack: FileStorage (reads, writes, hole punching, SEEK_DATA), the
// PoisonLatch, and GroupSync for FUA and FLUSH. Opening and sizing: raw-file-open.ts.
//
// - Durability: FUA and FLUSH call fdatasync on the one file all connections share, so a flush
//   covers every write completed before it on any connection; syncs that overlap share one
//   (GroupSync).
// - After a failed fdatasync the latch refuses every later write, zero, trim and flush with
//   STORAGE_POISONED; reads still work.
// - TRIM and WRITE_ZEROES leave zeroes. Large ranges are punched (fallocate PUNCH_HOLE) when
//   holes are allowed (TRIM, or zero without NO_HOLE). Smaller ranges, NO_HOLE, and a failed
//   punch write zeroes instead; a punch that fails once is not tried again on this device.
// - Block status: a regular file on a filesystem with SEEK_DATA reports its holes (sparse);
//   otherwise, and for block devices, everything is data.
// - A read past the end of a file that shrank under us is an IO error, not zeroes.
// - No lock is taken: two processes serving one file will corrupt it.
import {
  fullCapabilities,
  type BlockDevice,
  type BlockSizes,
  type DeviceCapabilities,
  type DeviceExtent,
  type WriteOptions,
  type ZeroOptions,
} from '../engine/block-device.ts';
import { DEFAULT_BLOCK_SIZES, withMinimum, type MinBlockSize } from '../engine/block-sizes.ts';
import { FileStorage } from '../storage/file-storage.ts';
import { GroupSync } from '../storage/group-sync.ts';
import { PoisonLatch } from '../storage/poison-latch.ts';
import { storageError } from '../storage/storage.ts';
import { fail, isIomapdError } from '../util/errors.ts';
import type { InlineIoGates, InlineIoModes } from '../util/fd-io.ts';
import { assertRange } from './device-checks.ts';
import { openRawFile, type RawFileOpenRequest } from './raw-file-open.ts';

const MiB = 1024 * 1024;
/** Zero writes go out in chunks of this size, all from one shared buffer that nobody writes to. */
const ZERO_CHUNK = MiB;
const ZERO_BUFFER = Buffer.alloc(ZERO_CHUNK);
/** Below this, writing the zeroes costs no more than punching, and leaves the file unfragmented. */
export const DEFAULT_PUNCH_MIN_LENGTH = 64 * 1024;
/** Block status answers at most this many extents per call (the client asks again for the rest). */
const MAX_STATUS_EXTENTS = 32;

export interface RawFileOpenOptions extends RawFileOpenRequest {
  /** Open O_RDONLY: serving needs only read permission. The server refuses writes itself. */
  readonly readOnly: boolean;
  /**
   * When the path does not exist, create a sparse regular file of this many bytes (a multiple
   * of 512) with mode 0600. An existing file is opened as it is, whatever its size.
   */
  readonly createSize?: number;
  /** Ranges shorter than this are zeroed by writing, never punched. */
  readonly punchMinLength?: number;
  /** Modes of this device's inline I/O gates (`--inline-reads / --inline-writes`; default auto). */
  readonly inline?: InlineIoModes;
  /** The advertised minimum block size (`serve --min-block-size`; default 512). */
  readonly minimumBlock?: MinBlockSize;
}

interface RawFileState {
  readonly path: string;
  readonly file: FileStorage;
  readonly size: number;
  readonly readOnly: boolean;
  readonly sparse: boolean;
  readonly punchMinLength: number;
  readonly minimumBlock?: MinBlockSize;
}

export class RawFileDevice implements BlockDevice {
  readonly size: number;
  readonly readOnly: boolean;
  readonly blockSizes: BlockSizes;
  readonly capabilities: DeviceCapabilities;
  /** The path given at open (for logs). */
  readonly path: string;
  /** This device's inline I/O gates (counters, and modes tests may change). */
  readonly gates: InlineIoGates;

  readonly #storage: PoisonLatch;
  readonly #file: FileStorage;
  readonly #syncs: GroupSync;
  readonly #punchMinLength: number;
  #punchAvailable = true;
  #closed = false;

  /** Use RawFileDevice.open. */
  private constructor(state: RawFileState) {
    this.path = state.path;
    this.size = state.size;
    this.readOnly = state.readOnly;
    this.capabilities = fullCapabilities(state.sparse);
    this.#file = state.file;
    this.gates = state.file.gates;
    this.#storage = new PoisonLatch(state.file);
    this.#syncs = new GroupSync(() => this.#storage.sync());
    this.#punchMinLength = state.punchMinLength;
    this.blockSizes = state.minimumBlock === undefined ? DEFAULT_BLOCK_SIZES : withMinimum(DEFAULT_BLOCK_SIZES, state.minimumBlock);
  }

  static async open(path: string, options: RawFileOpenOptions): Promise<RawFileDevice> {
    const punchMinLength = options.punchMinLength ?? DEFAULT_PUNCH_MIN_LENGTH;
    if (!Number.isSafeInteger(punchMinLength) || punchMinLength < 0) {
      fail('BAD_ARGUMENT', `punch minimum length ${punchMinLength} is not a non-negative integer`);
    }
    const { handle, size, regular } = await openRawFile(path, options);
    const file = FileStorage.over(handle, path, { inline: options.inline, pastEnd: 'fail' });
    try {
      // Holes are worth reporting only where lseek can find them: a regular file on a filesystem
      // with SEEK_DATA (others answer EINVAL or ENOTSUP, and a block device is all data).
      const sparse = regular && (await file.extents(0, Math.max(size, 1), 1)) !== null;
      const minimumBlock = options.minimumBlock === undefined ? {} : { minimumBlock: options.minimumBlock };
      return new RawFileDevice({ path, file, size, readOnly: options.readOnly, sparse, punchMinLength, ...minimumBlock });
    } catch (err) {
      await file.close().catch(() => {});
      throw err;
    }
  }

  /** True once a failed sync has made the device refuse writes. */
  get poisoned(): boolean {
    return this.#storage.poisoned;
  }

  async read(into: Buffer, offset: number): Promise<void> {
    assertRange(offset, into.length, this.size);
    await this.#storage.read(into, offset);
  }

  readNow(into: Buffer, offset: number): boolean {
    assertRange(offset, into.length, this.size);
    return this.#file.readNow(into, offset);
  }

  async write(data: Buffer, offset: number, options: WriteOptions): Promise<void> {
    assertRange(offset, data.length, this.size);
    await this.#storage.write(data, offset);
    this.#syncs.noteWrite();
    if (options.fua) await this.#syncs.sync();
  }

  async flush(): Promise<void> {
    await this.#syncs.sync();
  }

  async trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    assertRange(offset, length, this.size);
    this.#storage.refuseIfPoisoned();
    if (!(await this.#tryPunch(offset, length))) await this.#writeZeroes(offset, length);
    this.#syncs.noteWrite();
    if (options.fua) await this.#syncs.sync();
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    assertRange(offset, length, this.size);
    this.#storage.refuseIfPoisoned();
    // FAST_ZERO must fail before doing anything slow; the client then writes the zeroes itself.
    // Writing zeroes over a range too short to punch costs what a WRITE costs, so that is fast.
    const slowToWrite = length >= this.#punchMinLength;
    if (options.fast && slowToWrite && !(options.mayTrim && this.#punchAvailable)) {
      fail('FAST_ZERO_UNAVAILABLE');
    }
    const punched = options.mayTrim && (await this.#tryPunch(offset, length));
    if (!punched && options.fast && slowToWrite) fail('FAST_ZERO_UNAVAILABLE');
    if (!punched) await this.#writeZeroes(offset, length);
    this.#syncs.noteWrite();
    if (options.fua) await this.#syncs.sync();
  }

  async cache(offset: number, length: number): Promise<void> {
    // Node offers no posix_fadvise; the page cache does its own read-ahead.
    assertRange(offset, length, this.size);
  }

  async blockStatus(offset: number, length: number): Promise<DeviceExtent[]> {
    assertRange(offset, length, this.size);
    const runs = this.capabilities.sparse ? await this.#storage.extents?.(offset, length, MAX_STATUS_EXTENTS) : null;
    if (!runs) return [{ length, hole: false, zero: false }];
    return runs.map((r) => ({ length: r.length, hole: !r.data, zero: !r.data }));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#storage.close();
    } catch (err) {
      throw storageError(err, `close ${this.path}`);
    }
  }

  async #writeZeroes(offset: number, length: number): Promise<void> {
    for (let done = 0; done < length; done += ZERO_CHUNK) {
      await this.#storage.write(ZERO_BUFFER.subarray(0, Math.min(ZERO_CHUNK, length - done)), offset + done);
    }
  }

  /** Punches a hole that reads as zeroes; false when the range is short or punching fails. */
  async #tryPunch(offset: number, length: number): Promise<boolean> {
    if (!this.#punchAvailable || length === 0 || length < this.#punchMinLength) return false;
    try {
      await this.#storage.punchHole!(offset, length);
      return true;
    } catch (err) {
      if (isIomapdError(err, 'STORAGE_POISONED')) throw err;
      // A filesystem (or file type) without hole punching: write zeroes from now on.
      this.#punchAvailable = false;
      return false;
    }
  }
}
