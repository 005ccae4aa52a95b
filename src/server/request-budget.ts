// The server-wide cap on requests in flight (ServerLimits.maxInFlightTotal). Connections take a
// slot per request and give it back when the request is answered; a connection that finds the
// budget spent stops reading requests and asks to be woken when a slot frees up. Wake-ups are
// one-shot and go to every waiter; each re-checks, so none is lost and none waits forever while
// slots are free. Every slot is also counted process-wide (util/work-in-flight.ts).
import { workInFlight } from '../util/work-in-flight.ts';

export class RequestBudget {
  private used = 0;
  private readonly max: number;
  private readonly waiters = new Set<() => void>();

  constructor(max: number) {
    this.max = max;
  }

  get exhausted(): boolean {
    return this.used >= this.max;
  }

  get inFlight(): number {
    return this.used;
  }

  /** Takes a slot for a request from a client over a Unix socket (`overUnixSocket`) or TCP. */
  take(overUnixSocket = false): void {
    this.used++;
    workInFlight.requests++;
    if (overUnixSocket) workInFlight.overUnixSockets++;
  }

  /** Gives back a slot take() took, with the same `overUnixSocket`. */
  give(overUnixSocket = false): void {
    this.used--;
    workInFlight.requests--;
    if (overUnixSocket) workInFlight.overUnixSockets--;
    if (this.waiters.size === 0 || this.exhausted) return;
    const wake = [...this.waiters];
    this.waiters.clear();
    for (const w of wake) w();
  }

  /** Calls `wake` once, the next time a slot is given back. */
  waitForSlot(wake: () => void): void {
    this.waiters.add(wake);
  }

  cancel(wake: () => void): void {
    this.waiters.delete(wake);
  }
}
