// The byte-level backend interface beneath the image store. Deliberately small, so a later backend
// (an object store, a block device) only has to provide these six calls.
//
// Rules every backend follows:
// - read fills the whole buffer; bytes past the end of the storage read as zeros;
// - errors are IomapdError: NO_SPACE for ENOSPC/EDQUOT/EFBIG, IO for anything else;
// - after a sync fails, the outcome of earlier writes is unknown, so the backend is poisoned:
//   every later write, resize and sync fails with STORAGE_POISONED (reads still work).
import { IomapdError } from '../util/errors.ts';

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
}

/** Turns an errno-style failure into the registry's error. */
export function storageError(err: unknown, what: string): IomapdError {
  if (err instanceof IomapdError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const noSpace = code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG';
  return new IomapdError(noSpace ? 'NO_SPACE' : 'IO', `${what}: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
  });
}

export function poisonedError(): IomapdError {
  return new IomapdError('STORAGE_POISONED');
}
