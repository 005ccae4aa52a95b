// A raw file or block device served as it is: byte N of the export is byte N of the file.
//
// - Size: a regular file's size, or `blockdev --getsize64` for a block device (fstat reports 0
//   there), rounded DOWN to a multiple of 512. Bytes past the last whole 512-byte block are
//   unreachable through NBD and left untouched.
// - Durability: FUA and FLUSH call fdatasync on the one file handle all connections share, so a
//   flush covers every write completed before it on any connection. Syncs that overlap share
//   one fdatasync (a caller arriving mid-sync waits for the next one, which starts after it).
// - After a failed fdatasync the outcome of earlier writes is unknown (the kernel may already
//   have dropped the dirty pages and will not report the error again), so the device refuses
//   every later write, zero, trim and flush with STORAGE_POISONED; reads still work.
// - TRIM and WRITE_ZEROES leave zeroes. Node has no fallocate(2), so large ranges are punched by
//   running util-linux `fallocate --punch-hole --keep-size`, when holes are allowed (TRIM, or
//   zero without NO_HOLE). Smaller ranges, NO_HOLE, and a failed punch write zeroes instead; a
//   punch that fails once is not tried again on this device.
// - No advisory lock is taken (Node has none): two processes serving one file will corrupt it.
import { execFile } from 'node:child_process';
import type { Stats } from 'node:fs';
import { constants as fsConstants, readSync } from 'node:fs';
import { open as openFile, stat as statPath } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import type {
  BlockDevice,
  BlockSizes,
  DeviceCapabilities,
  DeviceExtent,
  WriteOptions,
  ZeroOptions,
} from '../engine/block-device.ts';
import { IomapdError, fail } from '../util/errors.ts';
import { fdIo } from '../util/fd-io.ts';
import { DEFAULT_BLOCK_SIZES } from '../engine/block-sizes.ts';
import { assertRange, fsError } from './device-checks.ts';

const execFileAsync = promisify(execFile);

const MiB = 1024 * 1024;
/** Zero writes go out in chunks of this size, all from one shared buffer that nobody writes to. */
const ZERO_CHUNK = MiB;
const ZERO_BUFFER = Buffer.alloc(ZERO_CHUNK);
/** Below this, starting a process to punch costs more than writing the zeroes. */
export const DEFAULT_PUNCH_MIN_LENGTH = 64 * 1024;

const RAW_FILE_CAPABILITIES: DeviceCapabilities = Object.freeze({
  flush: true,
  fua: true,
  trim: true,
  writeZeroes: true,
  fastZero: true,
  cache: true,
  sparse: false,
  multiConn: true,
  rotational: false,
});

export interface RawFileOpenOptions {
  /** Open O_RDONLY: serving needs only read permission. The server refuses writes itself. */
  readonly readOnly: boolean;
  /**
   * When the path does not exist, create a sparse regular file of this many bytes (a multiple
   * of 512) with mode 0600. An existing file is opened as it is, whatever its size.
   */
  readonly createSize?: number;
  /** The util-linux `fallocate` binary (tests point it elsewhere to see the fallback). */
  readonly fallocateCommand?: string;
  /** The util-linux `blockdev` binary, used to size block devices. */
  readonly blockdevCommand?: string;
  /** Ranges shorter than this are zeroed by writing, never punched. */
  readonly punchMinLength?: number;
}

interface RawFileState {
  readonly path: string;
  readonly handle: FileHandle;
  readonly size: number;
  readonly readOnly: boolean;
  readonly fallocateCommand: string;
  readonly punchMinLength: number;
}

export class RawFileDevice implements BlockDevice {
  readonly size: number;
  readonly readOnly: boolean;
  readonly blockSizes: BlockSizes = DEFAULT_BLOCK_SIZES;
  readonly capabilities = RAW_FILE_CAPABILITIES;
  /** The path given at open (for logs). */
  readonly path: string;

  readonly #handle: FileHandle;
  readonly #fallocateCommand: string;
  readonly #punchMinLength: number;
  #punchAvailable = true;
  #poisoned = false;
  #closed = false;
  #syncRunning: Promise<void> | null = null;
  #syncQueued: Promise<void> | null = null;

  /** Use RawFileDevice.open. */
  private constructor(state: RawFileState) {
    this.path = state.path;
    this.#handle = state.handle;
    this.size = state.size;
    this.readOnly = state.readOnly;
    this.#fallocateCommand = state.fallocateCommand;
    this.#punchMinLength = state.punchMinLength;
  }

  static async open(path: string, options: RawFileOpenOptions): Promise<RawFileDevice> {
    const { readOnly, createSize } = options;
    const punchMinLength = options.punchMinLength ?? DEFAULT_PUNCH_MIN_LENGTH;
    if (!Number.isSafeInteger(punchMinLength) || punchMinLength < 0) {
      fail('BAD_ARGUMENT', `punch minimum length ${punchMinLength} is not a non-negative integer`);
    }
    const existing = await statOrNull(path);
    let handle: FileHandle | undefined;
    if (existing === null) {
      if (createSize === undefined) fail('NOT_FOUND', `${path} does not exist`);
      handle = await createSparseFile(path, createSize, readOnly);
    } else if (!existing.isFile() && !existing.isBlockDevice()) {
      // Checked before opening: opening a FIFO would block.
      fail('BAD_ARGUMENT', `${path} is neither a regular file nor a block device`);
    }
    handle ??= await openExisting(path, readOnly);
    try {
      const stats = await handle.stat();
      const rawSize = await sizeOf(path, stats, options.blockdevCommand ?? 'blockdev');
      const minimum = DEFAULT_BLOCK_SIZES.minimum;
      return new RawFileDevice({
        path,
        handle,
        size: Math.floor(rawSize / minimum) * minimum,
        readOnly,
        fallocateCommand: options.fallocateCommand ?? 'fallocate',
        punchMinLength,
      });
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
  }

  /** True once a failed sync has made the device refuse writes. */
  get poisoned(): boolean {
    return this.#poisoned;
  }

  async read(into: Buffer, offset: number): Promise<void> {
    assertRange(offset, into.length, this.size);
    let done = 0;
    while (done < into.length) {
      let bytesRead: number;
      try {
        bytesRead = await fdIo.pread(this.#handle.fd, into, done, into.length - done, offset + done);
      } catch (err) {
        throw fsError(err, `read ${this.path} at ${offset + done}`);
      }
      if (bytesRead === 0) {
        fail('IO', `read ${this.path} at ${offset + done}: end of file (the file shrank)`);
      }
      done += bytesRead;
    }
  }

  readNow(into: Buffer, offset: number): boolean {
    assertRange(offset, into.length, this.size);
    let done = 0;
    while (done < into.length) {
      let bytesRead: number | null;
      try {
        bytesRead = fdIo.preadNow(this.#handle.fd, into, done, into.length - done, offset + done);
      } catch (err) {
        throw fsError(err, `read ${this.path} at ${offset + done}`);
      }
      if (bytesRead === null) {
        if (done === 0) return false;
        // Admitted once, so the data was in cache a moment ago: finish the short read here.
        bytesRead = readSyncOrThrow(this.#handle.fd, into, done, offset + done, this.path);
      }
      if (bytesRead === 0) fail('IO', `read ${this.path} at ${offset + done}: end of file (the file shrank)`);
      done += bytesRead;
    }
    return true;
  }

  async write(data: Buffer, offset: number, options: WriteOptions): Promise<void> {
    assertRange(offset, data.length, this.size);
    this.#refuseIfPoisoned();
    await this.#writeAll(data, 0, data.length, offset);
    if (options.fua) await this.#sync();
  }

  async flush(): Promise<void> {
    await this.#sync();
  }

  async trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    assertRange(offset, length, this.size);
    this.#refuseIfPoisoned();
    if (!(await this.#tryPunch(offset, length))) await this.#writeZeroes(offset, length);
    if (options.fua) await this.#sync();
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    assertRange(offset, length, this.size);
    this.#refuseIfPoisoned();
    // FAST_ZERO must fail before doing anything slow; the client then writes the zeroes itself.
    // Writing zeroes over a range too short to punch costs what a WRITE costs, so that is fast.
    const slowToWrite = length >= this.#punchMinLength;
    if (options.fast && slowToWrite && !(options.mayTrim && this.#punchAvailable)) {
      fail('FAST_ZERO_UNAVAILABLE');
    }
    const punched = options.mayTrim && (await this.#tryPunch(offset, length));
    if (!punched && options.fast && slowToWrite) fail('FAST_ZERO_UNAVAILABLE');
    if (!punched) await this.#writeZeroes(offset, length);
    if (options.fua) await this.#sync();
  }

  async cache(offset: number, length: number): Promise<void> {
    // Node offers no posix_fadvise; the page cache does its own read-ahead.
    assertRange(offset, length, this.size);
  }

  async blockStatus(offset: number, length: number): Promise<DeviceExtent[]> {
    assertRange(offset, length, this.size);
    return [{ length, hole: false, zero: false }];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#handle.close();
    } catch (err) {
      throw fsError(err, `close ${this.path}`);
    }
  }

  #refuseIfPoisoned(): void {
    if (this.#poisoned) {
      fail('STORAGE_POISONED', `${this.path}: an earlier fdatasync failed; refusing writes`);
    }
  }

  async #writeAll(data: Buffer, start: number, end: number, position: number): Promise<void> {
    let done = start;
    while (done < end) {
      let bytesWritten: number;
      try {
        bytesWritten = await fdIo.pwrite(this.#handle.fd, data, done, end - done, position + done - start);
      } catch (err) {
        throw fsError(err, `write ${this.path} at ${position + done - start}`);
      }
      if (bytesWritten === 0) fail('IO', `write ${this.path} at ${position + done - start}: no progress`);
      done += bytesWritten;
    }
  }

  async #writeZeroes(offset: number, length: number): Promise<void> {
    for (let done = 0; done < length; done += ZERO_CHUNK) {
      await this.#writeAll(ZERO_BUFFER, 0, Math.min(ZERO_CHUNK, length - done), offset + done);
    }
  }

  /** Punches a hole that reads as zeroes; false when the range is short or punching fails. */
  async #tryPunch(offset: number, length: number): Promise<boolean> {
    if (!this.#punchAvailable || length === 0 || length < this.#punchMinLength) return false;
    // Through /proc the child opens the very file we hold, even if the path was renamed since.
    const target = `/proc/${process.pid}/fd/${this.#handle.fd}`;
    try {
      await execFileAsync(this.#fallocateCommand, [
        '--punch-hole', '--keep-size', '--offset', String(offset), '--length', String(length), target,
      ]);
      return true;
    } catch {
      // Missing binary, a file system without hole punching, or no /proc: write zeroes from now on.
      this.#punchAvailable = false;
      return false;
    }
  }

  /** fdatasync, shared by callers that overlap; each caller's sync starts after its call. */
  #sync(): Promise<void> {
    if (this.#syncQueued !== null) return this.#syncQueued;
    const running = this.#syncRunning;
    if (running === null) return this.#startSync();
    const queued = running.catch(() => {}).then(() => this.#startSync());
    this.#syncQueued = queued;
    return queued;
  }

  #startSync(): Promise<void> {
    this.#syncQueued = null;
    const running: Promise<void> = this.#datasync().finally(() => {
      if (this.#syncRunning === running) this.#syncRunning = null;
    });
    this.#syncRunning = running;
    return running;
  }

  async #datasync(): Promise<void> {
    this.#refuseIfPoisoned();
    try {
      await this.#handle.datasync();
    } catch (err) {
      this.#poisoned = true;
      throw fsError(err, `fdatasync ${this.path}`);
    }
  }
}

function readSyncOrThrow(fd: number, into: Buffer, at: number, position: number, path: string): number {
  try {
    return readSync(fd, into, at, into.length - at, position);
  } catch (err) {
    throw fsError(err, `read ${path} at ${position}`);
  }
}

async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await statPath(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fsError(err, `stat ${path}`);
  }
}

async function createSparseFile(path: string, size: number, readOnly: boolean): Promise<FileHandle | undefined> {
  const minimum = DEFAULT_BLOCK_SIZES.minimum;
  if (!Number.isSafeInteger(size) || size <= 0 || size % minimum !== 0) {
    fail('BAD_ARGUMENT', `size ${size} to create ${path} with is not a positive multiple of ${minimum}`);
  }
  if (readOnly) fail('BAD_ARGUMENT', `${path} does not exist, and a read-only export cannot create it`);
  let handle: FileHandle;
  try {
    // O_EXCL: never truncate a file that appeared since we looked.
    const flags = fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL;
    handle = await openFile(path, flags, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return undefined; // someone else created it: open theirs as it is
    if (code === 'ENOENT') fail('NOT_FOUND', `cannot create ${path}: its directory does not exist`, err);
    throw fsError(err, `create ${path}`);
  }
  try {
    await handle.truncate(size);
    return handle;
  } catch (err) {
    await handle.close().catch(() => {});
    throw fsError(err, `size ${path} to ${size} bytes`);
  }
}

async function openExisting(path: string, readOnly: boolean): Promise<FileHandle> {
  try {
    return await openFile(path, readOnly ? 'r' : 'r+');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') fail('NOT_FOUND', `${path} does not exist`, err);
    if (code === 'EISDIR') fail('BAD_ARGUMENT', `${path} is a directory, not a file or block device`, err);
    throw fsError(err, `open ${path}`);
  }
}

async function sizeOf(path: string, stats: Stats, blockdevCommand: string): Promise<number> {
  if (stats.isFile()) return stats.size;
  if (!stats.isBlockDevice()) fail('BAD_ARGUMENT', `${path} is neither a regular file nor a block device`);
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(blockdevCommand, ['--getsize64', path]));
  } catch (err) {
    throw new IomapdError('IO', `cannot size block device ${path} with ${blockdevCommand}`, { cause: err });
  }
  const size = Number(stdout.trim());
  if (!Number.isSafeInteger(size) || size < 0) fail('IO', `${blockdevCommand} printed no size for ${path}: ${stdout}`);
  return size;
}
