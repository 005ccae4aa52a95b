// Issues one request's sub-I/Os with a bounded number in flight (semantics K6) and the error rules
// of L2-L4: the first error wins, nothing is issued once an error is recorded, and settle() waits
// for everything already issued, so the request never finishes while a sub-I/O still runs.

export const SUB_IO_BYTES = 1024 * 1024;
const MAX_IN_FLIGHT = 4;

export class IoWindow {
  private inFlight = new Set<Promise<void>>();
  /** The first error seen (L3); later ones are dropped. */
  error: unknown = null;
  /** Sub-I/Os actually started (tests check that none start after an error). */
  issued = 0;

  get failed(): boolean {
    return this.error !== null;
  }

  fail(err: unknown): void {
    if (this.error === null) this.error = err ?? new Error('unknown failure');
  }

  /** Starts `op` once a slot is free; does nothing if the request already failed (L4). */
  async issue(op: () => Promise<void>): Promise<void> {
    while (this.inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.inFlight);
    if (this.failed) return;
    this.issued++;
    const p: Promise<void> = op().then(
      () => {
        this.inFlight.delete(p);
      },
      (err: unknown) => {
        this.inFlight.delete(p);
        this.fail(err);
      },
    );
    this.inFlight.add(p);
  }

  /** Waits for every issued sub-I/O; throws the first error. */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
    if (this.failed) throw this.error;
  }
}

/** Splits [start, end) into pieces of at most SUB_IO_BYTES. */
export function* chunks(start: number, end: number): Generator<[number, number]> {
  for (let at = start; at < end; at += SUB_IO_BYTES) yield [at, Math.min(end, at + SUB_IO_BYTES)];
}
