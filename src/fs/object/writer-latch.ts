// The writer role of an object-store image, once lost. A writer that finds a newer epoch (its
// journal key taken by a seal, or its manifest CAS beaten by an epoch bump) is fenced: it logs
// that once, loudly, and from then on every write, commit and checkpoint fails with FENCED (EIO on
// the wire) before any call to the store, so it never writes the image again.
import { IomapdError } from '../../util/errors.ts';
import type { Logger } from '../../util/log.ts';

export class WriterLatch {
  private fencedBy: IomapdError | null = null;
  private readonly log: Logger;
  private readonly description: string;

  constructor(log: Logger, description: string) {
    this.log = log;
    this.description = description;
  }

  get fenced(): IomapdError | null {
    return this.fencedBy;
  }

  /** Records that another writer took over; returns the error for the caller that found out. */
  fence(why: string): IomapdError {
    if (!this.fencedBy) {
      this.fencedBy = new IomapdError('FENCED', `another writer took over ${this.description}: ${why}; this process stops writing it`);
      this.log.error({ image: this.description, why }, 'FENCED: another writer took over this object-store image; every later write and flush fails');
    }
    return this.fencedBy;
  }

  /** Throws FENCED once fenced. */
  refuse(): void {
    if (this.fencedBy) throw this.fencedBy;
  }
}
