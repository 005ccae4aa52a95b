// The seam between an object-store image (src/fs) and the store that holds its objects: an
// S3-compatible bucket in production (storage/s3), a strict in-process fake in unit tests. Keys are
// relative to the image's prefix. Objects are never modified in place except by putIfMatch, which
// only the manifest uses.
//
// Errors: every method rejects with an IomapdError. PRECONDITION failures are `ObjectConflict`
// (a normal outcome for conditional writes, not an error to log); an absent key is `null`, not an
// error. Transient failures (5xx, 429/SlowDown, timeouts, resets) are retried inside the
// implementation with backoff and jitter; what is still failing after the retry budget becomes
// STORE_UNAVAILABLE. Bad configuration (no bucket, bad credentials) is STORE_CONFIG. No message
// ever carries a secret.

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  /** The entity tag without surrounding quotes (radosgw compares If-Match unquoted). */
  readonly etag: string;
}

export interface ObjectBody {
  readonly body: Buffer;
  readonly etag: string;
}

/** A conditional write lost: the key exists (putIfAbsent) or its etag moved on (putIfMatch). */
export class ObjectConflict extends Error {
  readonly key: string;
  constructor(key: string) {
    super(`conditional write of ${key} lost: the object exists or changed`);
    this.name = 'ObjectConflict';
    this.key = key;
  }
}

export interface ObjectStore {
  /** A short description for logs and messages (endpoint, bucket and prefix; never a secret). */
  readonly description: string;
  /** Creates `key` only if it does not exist (If-None-Match: *); resolves its etag. */
  putIfAbsent(key: string, body: Buffer): Promise<string>;
  /** Replaces `key` only while its etag is still `etag` (If-Match); resolves the new etag. */
  putIfMatch(key: string, body: Buffer, etag: string): Promise<string>;
  /** The object, or the byte range [offset, offset+length) of it; null when the key is absent. */
  get(key: string, range?: { offset: number; length: number }): Promise<ObjectBody | null>;
  head(key: string): Promise<ObjectInfo | null>;
  /** Every key under `prefix` (relative to the image's prefix), in lexicographic order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Deletes `key`; deleting an absent key succeeds. */
  delete(key: string): Promise<void>;
}
