// Requests a connection has started and not yet answered, and the limits on them. Per connection:
// how many (ServerLimits.maxInFlightPerConnection) and the memory they hold
// (Limits.maxInFlightBytesPerConnection). Server-wide: a slot each in the shared RequestBudget
// (ServerLimits.maxInFlightTotal). A connection at any limit stops reading requests; when the
// server-wide one holds it, the budget wakes it as soon as any connection answers a request.
import { Cmd } from '../protocol/constants.ts';
import { Limits } from './limits.ts';
import type { RequestBudget } from './request-budget.ts';
import type { ValidRequest } from './validate.ts';

/** Memory a request holds until it is answered: its WRITE payload, or its READ reply buffer. */
export function heldBytes(req: ValidRequest, payload: Buffer | null): number {
  return (payload?.length ?? 0) + (req.type === Cmd.READ ? req.length : 0);
}

export class RequestsInFlight {
  private requests = 0;
  private bytes = 0;
  private readonly maxRequests: number;
  private readonly budget: RequestBudget;
  /** Made once per connection: the budget calls it when a slot frees up. */
  private readonly wake: () => void;

  constructor(maxRequests: number, budget: RequestBudget, wake: () => void) {
    this.maxRequests = maxRequests;
    this.budget = budget;
    this.wake = wake;
  }

  get count(): number {
    return this.requests;
  }

  /** Whether another request must wait; at the server-wide limit, also asks to be woken. */
  atLimit(): boolean {
    if (this.requests >= this.maxRequests || this.bytes >= Limits.maxInFlightBytesPerConnection) return true;
    if (!this.budget.exhausted) return false;
    this.budget.waitForSlot(this.wake);
    return true;
  }

  /** A request starts, holding `bytes` (heldBytes) until it is answered. */
  begin(bytes: number): void {
    this.budget.take();
    this.requests++;
    this.bytes += bytes;
  }

  /** A request is answered. Its server-wide slot stays taken until giveSlot(). */
  end(bytes: number): void {
    this.requests--;
    this.bytes -= bytes;
  }

  /** Gives an answered request's server-wide slot back; this may wake other connections (and this one). */
  giveSlot(): void {
    this.budget.give();
  }

  /** No wake-up wanted any more: the connection is closing. */
  stopWaiting(): void {
    this.budget.cancel(this.wake);
  }
}
