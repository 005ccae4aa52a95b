// The poison latch, once, as a wrapper every backend goes through (style habit 10). After a sync
// fails, the outcome of earlier writes is unknown (the kernel may have dropped the dirty pages and
// will not report the error again), so from then on every write, resize and sync is refused with
// STORAGE_POISONED (EIO on the wire) instead of guessed at; reads still work. Owners that know
// more (the image store, when a journal write fails) latch it themselves with poison().
//
// The caller that hit the failure still sees the real error (EIO or ENOSPC); only later callers
// see STORAGE_POISONED.
import { IomapdError } from '../util/errors.ts';
import { type Storage, type StorageExtent, storageError } from './storage.ts';

export class PoisonLatch implements Storage {
  readonly inner: Storage;
  #failure: IomapdError | null = null;
  readonly readNow?: (buf: Buffer, offset: number) => boolean;
  readonly punchHole?: (offset: number, length: number) => Promise<void>;
  readonly extents?: (offset: number, length: number, max: number) => Promise<StorageExtent[] | null>;

  constructor(inner: Storage) {
    this.inner = inner;
    // The optional calls exist here exactly when the inner storage has them.
    if (inner.readNow) this.readNow = inner.readNow.bind(inner);
    if (inner.extents) this.extents = inner.extents.bind(inner);
    const punch = inner.punchHole?.bind(inner);
    if (punch) {
      this.punchHole = async (offset, length) => {
        this.refuseIfPoisoned();
        await punch(offset, length);
      };
    }
  }

  /** Wraps `storage` unless it already is a latch. */
  static over(storage: Storage): PoisonLatch {
    return storage instanceof PoisonLatch ? storage : new PoisonLatch(storage);
  }

  /** The STORAGE_POISONED error later callers get, or null while the storage is healthy. */
  get failure(): IomapdError | null {
    return this.#failure;
  }

  get poisoned(): boolean {
    return this.#failure !== null;
  }

  /**
   * Latches after a failure whose outcome is unknown. Returns the failure itself as an
   * IomapdError, for the caller that hit it to report.
   */
  poison(err: unknown, what = 'sync'): IomapdError {
    const first = storageError(err, what);
    this.#failure ??= new IomapdError(
      'STORAGE_POISONED',
      `the storage refuses writes after a failed sync or metadata write: ${first.message}`,
      { cause: first },
    );
    return first;
  }

  /** Throws STORAGE_POISONED once latched. */
  refuseIfPoisoned(): void {
    if (this.#failure) throw this.#failure;
  }

  read(buf: Buffer, offset: number): Promise<void> {
    return this.inner.read(buf, offset);
  }

  /** No async layer of its own: this is on every data write's path. */
  write(buf: Buffer, offset: number): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    return this.inner.write(buf, offset);
  }

  async sync(): Promise<void> {
    this.refuseIfPoisoned();
    try {
      await this.inner.sync();
    } catch (err) {
      throw this.poison(err, 'fdatasync');
    }
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  async resize(size: number): Promise<void> {
    this.refuseIfPoisoned();
    await this.inner.resize(size);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
