// Requests a connection has started and not yet answered: starting one (dispatch), answering it
// (its reply, or its error as an NBD errno: the one place a device's error becomes one, style.md
// habit 6), and the limits on them. Per connection: how many (ServerLimits.maxInFlightPerConnection)
// and the memory they hold (Limits.maxInFlightBytesPerConnection). Server-wide: a slot each in the
// shared RequestBudget (ServerLimits.maxInFlightTotal). A connection at any limit stops reading
// requests; when the server-wide one holds it, the budget wakes it as soon as any connection
// answers a request.
import { Cmd } from '../protocol/constants.ts';
import { cmdFlagNames, cmdName, errName } from '../protocol/names.ts';
import type { Logger } from '../util/log.ts';
import { dispatch, type DispatchContext, type Reply } from './dispatch.ts';
import { toNbdErrno } from './errno.ts';
import { payloadDone } from './io-buffers.ts';
import { Limits } from './limits.ts';
import { errorReply } from './replies.ts';
import type { RequestBudget } from './request-budget.ts';
import type { ValidRequest } from './validate.ts';

/** Memory a request holds until it is answered: its WRITE payload, or its READ reply buffer. */
export function heldBytes(req: ValidRequest, payload: Buffer | null): number {
  return (payload?.length ?? 0) + (req.type === Cmd.READ ? req.length : 0);
}

/** Logs a request and its outcome at trace level; costs a level check otherwise. */
export function traceRequest(log: Logger, req: { type: number; flags: number; offset: bigint | number; length: bigint | number }, errno: number): void {
  if (!log.isLevelEnabled('trace')) return;
  log.trace(
    { command: cmdName(req.type), flags: cmdFlagNames(req.flags), offset: Number(req.offset), length: Number(req.length), result: errName(errno) },
    'request',
  );
}

export class RequestsInFlight {
  private requests = 0;
  private bytes = 0;
  private readonly maxRequests: number;
  private readonly budget: RequestBudget;
  /** Made once per connection: the budget calls it when a slot frees up. */
  private readonly wake: () => void;
  /** Made once per connection: sends a request's reply and lets the connection read on. */
  private readonly answered: (reply: Reply) => void;
  /** The client is on a Unix socket (counted apart process-wide: util/work-in-flight.ts). */
  private readonly overUnixSocket: boolean;

  constructor(maxRequests: number, budget: RequestBudget, wake: () => void, answered: (reply: Reply) => void, overUnixSocket = false) {
    this.maxRequests = maxRequests;
    this.budget = budget;
    this.wake = wake;
    this.answered = answered;
    this.overUnixSocket = overUnixSocket;
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

  /** Starts a validated request on the device; its reply goes to `answered` when it settles. */
  start(ctx: DispatchContext, req: ValidRequest, payload: Buffer | null, log: Logger): void {
    const bytes = heldBytes(req, payload);
    const { metrics } = ctx;
    const startMs = metrics === null ? 0 : performance.now();
    this.budget.take(this.overUnixSocket);
    this.requests++;
    this.bytes += bytes;
    dispatch(ctx, req, payload).then(
      (reply) => {
        if (payload !== null) payloadDone(payload);
        metrics?.record(req.type, 0, req.length, startMs);
        this.finish(req, bytes, reply, 0, log);
      },
      (err: unknown) => {
        const { errno, message, isExpected } = toNbdErrno(err);
        if (!isExpected) log.error({ err, command: cmdName(req.type) }, 'request failed with an unexpected error');
        else log.warn({ command: cmdName(req.type), offset: req.offset, length: req.length, error: errName(errno), reason: message }, 'request failed');
        metrics?.record(req.type, errno, req.length, startMs);
        this.finish(req, bytes, [errorReply(ctx.style, req, errno, message)], errno, log);
      },
    );
  }

  private finish(req: ValidRequest, bytes: number, reply: Reply, errno: number, log: Logger): void {
    this.requests--;
    this.bytes -= bytes;
    traceRequest(log, req, errno);
    this.answered(reply);
    // Last: giving the slot back may wake other connections (and this one), which then read on.
    this.budget.give(this.overUnixSocket);
  }

  /** No wake-up wanted any more: the connection is closing. */
  stopWaiting(): void {
    this.budget.cancel(this.wake);
  }
}
