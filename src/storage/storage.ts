// The byte-level backend interface beneath the image store and the raw-file device. Deliberately
// small, so a later backend (an object store, a block device) only has to provide these six calls;
// the optional ones are what a file can do and memory need not.
//
// Rules every backend follows:
// - read fills the whole buffer; bytes past the end of the storage read as zeros (unless the
//   backend was opened to fail there instead);
// - errors are IomapdError, mapped once by storageError: NO_SPACE for ENOSPC/EDQUOT/EFBIG, IO for
//   anything else, with the OS error as the cause;
// - after a sync fails, the outcome of earlier writes is unknown, so the backend is poisoned:
//   every later write, resize and sync fails with STORAGE_POISONED (reads still work). That rule
//   lives once, in PoisonLatch (poison-latch.ts), which every backend is used through.
import { IomapdError } from '../util/errors.ts';

/** One run of a file's allocation, as SEEK_DATA / SEEK_HOLE see it. */
export interface StorageExtent {
  readonly length: number;
  /** False for a hole: nothing allocated, reads return zeroes. */
  readonly data: boolean;
}

export interface Storage {
  read(buf: Buffer, offset: number): Promise<void>;
  /**
   * Fills buf now, synchronously, if the backend can without waiting (a page-cache hit the inline
   * read gate admits); false when the caller must use read(). Optional.
   */
  readNow?(buf: Buffer, offset: number): boolean;
  write(buf: Buffer, offset: number): Promise<void>;
  /** Makes every completed write durable (fdatasync strength). */
  sync(): Promise<void>;
  size(): Promise<number>;
  resize(size: number): Promise<void>;
  close(): Promise<void>;
  /**
   * Deallocates `[offset, offset+length)`, which then reads as zeroes; the size stays. Rejects
   * where the filesystem cannot (the caller writes zeroes instead). Optional.
   */
  punchHole?(offset: number, length: number): Promise<void>;
  /**
   * The allocation of `[offset, offset+length)`: contiguous runs from `offset`, at most `max` of
   * them (so possibly covering only a prefix), each longer than 0. Null when the filesystem cannot
   * tell holes from data. Optional.
   */
  extents?(offset: number, length: number, max: number): Promise<StorageExtent[] | null>;
}

const NO_SPACE_CODES = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/** Turns an errno-style failure into the registry's error: the one errno mapping of iomapd. */
export function storageError(err: unknown, what: string): IomapdError {
  if (err instanceof IomapdError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const noSpace = code !== undefined && NO_SPACE_CODES.has(code);
  return new IomapdError(noSpace ? 'NO_SPACE' : 'IO', `${what}: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
  });
}
