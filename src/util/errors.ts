// The one registry of iomapd's errors. Each code is stable: logs, the CLI and tests name it, and
// docs/ERRORS.md documents it (test/unit/util/errors.test.ts keeps the two in step). Which NBD errno a
// code becomes is decided in exactly one place: src/server/errno.ts.

export const ErrorCodes = {
  // Request-level: a client asked for something the export cannot do.
  INVALID_REQUEST: 'the request is malformed, misaligned or uses a flag or command that was not advertised',
  OUT_OF_RANGE: 'the request reaches past the end of the export',
  NO_SPACE: 'there is no space left for the write',
  READ_ONLY: 'the export or volume is read-only',
  TOO_LARGE: 'the request is larger than this server handles in one piece',
  NOT_SUPPORTED: 'the operation is not supported here',
  FAST_ZERO_UNAVAILABLE: 'zeroing this range cannot be done fast',
  SHUTTING_DOWN: 'the server is shutting down',
  NO_MEMORY: 'the server could not allocate memory for the request',
  // Storage-level: the backing file or image failed or is damaged.
  IO: 'the backing storage failed',
  STORAGE_POISONED: 'an earlier sync failed with an unknown outcome, so the storage refuses writes',
  CORRUPT: 'the image is damaged: a checksum, magic or structure does not verify',
  BAD_MAGIC: 'the file is not an iomapd image',
  FORMAT_TOO_NEW: 'the image was written by a newer format version',
  LOCKED: 'the image is already open in another process',
  // Object store: an image kept in an S3-compatible bucket.
  FENCED: 'another host took the writer role of this object-store image; this one stops writing',
  STORE_UNAVAILABLE: 'the object store did not answer or kept failing after retries',
  STORE_CONFIG: 'the object store refused the configuration: bucket, prefix, endpoint or credentials',
  STORE_UNSUPPORTED: 'the object store lacks a feature iomapd needs (conditional writes)',
  // Administrative: names and arguments from the CLI or the control channel.
  NOT_FOUND: 'no such volume, snapshot or export',
  ALREADY_EXISTS: 'a volume, snapshot or file with that name already exists',
  BAD_ARGUMENT: 'an argument is out of range or malformed',
  BUSY: 'the volume is in use by open NBD connections',
  NOT_RUNNING: 'no daemon is serving the image',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class IomapdError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ErrorCodes[code], options);
    this.name = 'IomapdError';
    this.code = code;
  }
}

export function isIomapdError(err: unknown, code?: ErrorCode): err is IomapdError {
  return err instanceof IomapdError && (code === undefined || err.code === code);
}

/** Shorthand for `throw new IomapdError(...)` in expression position. */
export function fail(code: ErrorCode, message?: string, cause?: unknown): never {
  throw new IomapdError(code, message, cause === undefined ? undefined : { cause });
}
