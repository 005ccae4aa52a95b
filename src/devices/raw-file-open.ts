// Opening what `iomapd serve --raw` serves: an existing regular file or block device as it is, or
// a new sparse file. Sizes come from fstat, or `blockdev --getsize64` for a block device (fstat
// reports 0 there), rounded DOWN to a multiple of 512: bytes past the last whole 512-byte block
// are unreachable through NBD and left untouched.
import { execFile } from 'node:child_process';
import type { Stats } from 'node:fs';
import { constants as fsConstants } from 'node:fs';
import { open as openFile, stat as statPath } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { DEFAULT_BLOCK_SIZES } from '../engine/block-sizes.ts';
import { storageError } from '../storage/storage.ts';
import { IomapdError, fail } from '../util/errors.ts';

const execFileAsync = promisify(execFile);

export interface RawFileOpenRequest {
  readonly readOnly: boolean;
  /** Create a sparse regular file of this many bytes (mode 0600) when the path does not exist. */
  readonly createSize?: number;
  /** The util-linux `blockdev` binary, used to size block devices. */
  readonly blockdevCommand?: string;
}

export interface OpenedRawFile {
  readonly handle: FileHandle;
  /** The served size: the file's or device's, rounded down to a multiple of 512. */
  readonly size: number;
  /** A regular file (which may have holes), not a block device. */
  readonly regular: boolean;
}

export async function openRawFile(path: string, request: RawFileOpenRequest): Promise<OpenedRawFile> {
  const { readOnly, createSize } = request;
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
    const rawSize = await sizeOf(path, stats, request.blockdevCommand ?? 'blockdev');
    const minimum = DEFAULT_BLOCK_SIZES.minimum;
    return { handle, size: Math.floor(rawSize / minimum) * minimum, regular: stats.isFile() };
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
}

async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await statPath(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw storageError(err, `stat ${path}`);
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
    throw storageError(err, `create ${path}`);
  }
  try {
    await handle.truncate(size);
    return handle;
  } catch (err) {
    await handle.close().catch(() => {});
    throw storageError(err, `size ${path} to ${size} bytes`);
  }
}

async function openExisting(path: string, readOnly: boolean): Promise<FileHandle> {
  try {
    return await openFile(path, readOnly ? 'r' : 'r+');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') fail('NOT_FOUND', `${path} does not exist`, err);
    if (code === 'EISDIR') fail('BAD_ARGUMENT', `${path} is a directory, not a file or block device`, err);
    throw storageError(err, `open ${path}`);
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
