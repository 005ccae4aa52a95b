// The one place where iomapd's errors become NBD error numbers (style.md habit 6).
import { NbdErr, type NbdErrno } from '../protocol/constants.ts';
import { IomapdError, type ErrorCode } from '../util/errors.ts';

const errnoOf: Record<ErrorCode, NbdErrno> = {
  INVALID_REQUEST: NbdErr.EINVAL,
  OUT_OF_RANGE: NbdErr.EINVAL,
  NO_SPACE: NbdErr.ENOSPC,
  READ_ONLY: NbdErr.EPERM,
  TOO_LARGE: NbdErr.EOVERFLOW,
  NOT_SUPPORTED: NbdErr.ENOTSUP,
  FAST_ZERO_UNAVAILABLE: NbdErr.ENOTSUP,
  SHUTTING_DOWN: NbdErr.ESHUTDOWN,
  NO_MEMORY: NbdErr.ENOMEM,
  IO: NbdErr.EIO,
  STORAGE_POISONED: NbdErr.EIO,
  CORRUPT: NbdErr.EIO,
  BAD_MAGIC: NbdErr.EIO,
  FORMAT_TOO_NEW: NbdErr.EIO,
  LOCKED: NbdErr.EIO,
  FENCED: NbdErr.EIO,
  STORE_UNAVAILABLE: NbdErr.EIO,
  STORE_CONFIG: NbdErr.EIO,
  STORE_UNSUPPORTED: NbdErr.EIO,
  NOT_FOUND: NbdErr.EINVAL,
  ALREADY_EXISTS: NbdErr.EINVAL,
  BAD_ARGUMENT: NbdErr.EINVAL,
  // Control channel only; never raised while serving a request.
  BUSY: NbdErr.EINVAL,
  NOT_RUNNING: NbdErr.EINVAL,
};

export function nbdErrnoFor(code: ErrorCode): NbdErrno {
  return errnoOf[code];
}

/**
 * The NBD error for anything thrown while serving a request. Unknown errors are EIO; the caller
 * logs them with their cause first (`isExpected` says whether that is needed).
 */
export function toNbdErrno(err: unknown): { errno: NbdErrno; message: string; isExpected: boolean } {
  if (err instanceof IomapdError) return { errno: errnoOf[err.code], message: err.message, isExpected: true };
  return { errno: NbdErr.EIO, message: 'internal error', isExpected: false };
}

/** Why a request was refused before it reached the device: its errno and the message an ERROR chunk carries. */
export interface Rejection {
  readonly errno: NbdErrno;
  readonly message: string;
}

export function rejection(code: ErrorCode, message: string): Rejection {
  return { errno: errnoOf[code], message };
}
