// One client connection: an explicit state table over a byte queue (style.md habit 4).
//
//   flags -> option-header -> option-data -> option-header ... -> request-header
//   request-header -> request-payload -> request-header ...      (payload only when one follows)
//   any state -> closed                                          (fatal error, EOF, ABORT, DISC)
//
// Two kinds of error: fatal ones close the socket (bad magic, unknown client flags, absurd
// lengths); per-request ones get an error reply after a rejected WRITE's payload is drained.
// Replies go out in completion order, each written as one unit.
import type { Socket } from 'node:net';
import { ClientFlag, Cmd, HandshakeFlag } from '../protocol/constants.ts';
import { ByteQueue } from '../protocol/framer.ts';
import { decodeClientFlags, decodeOptionHeader, encodeGreeting } from '../protocol/handshake.ts';
import { cmdFlagNames, cmdName, errName, optName, txFlagNames } from '../protocol/names.ts';
import { decodeRequest, type HeaderStyle, type Request } from '../protocol/transmission.ts';
import type { Logger } from '../util/log.ts';
import { IomapdError } from '../util/errors.ts';
import { dispatch, type DispatchContext, type Reply } from './dispatch.ts';
import { toNbdErrno } from './errno.ts';
import type { Export, ExportRegistry } from './export-registry.ts';
import { DEFAULT_SERVER_LIMITS, Limits, type ServerLimits } from './limits.ts';
import { handleOption, newSession, type Session } from './negotiation.ts';
import { errorReply } from './replies.ts';
import { payloadDone, takePayloadBuffer, writeReply } from './io-buffers.ts';
import { RequestBudget } from './request-budget.ts';
import { ReceiveSlab, adoptWithUserBuffers } from './socket-receive.ts';
import { RequestCounters } from './request-counters.ts';
import { transmissionFlags } from './transmission-flags.ts';
import { validateRequest, type ValidationContext, type ValidRequest } from './validate.ts';

type State = 'flags' | 'option-header' | 'option-data' | 'request-header' | 'request-payload' | 'closed';

/** A header that has been read and judged, waiting for its payload bytes. */
interface PendingRequest {
  readonly header: Request;
  readonly request: ValidRequest | null; // null: rejected, the payload is drained
  readonly rejection: { errno: number; message: string } | null;
  remaining: number;
  readonly chunks: Buffer[];
  /** A large accepted payload's own buffer, which the socket reads straight into (socket-receive.ts). */
  readonly into: Buffer | null;
}

interface Transmission {
  readonly export: Export;
  readonly validation: ValidationContext;
  readonly dispatch: DispatchContext;
}

const CLIENT_FLAGS_KNOWN = ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES;
/** WRITE payloads this large are read straight into their own buffer; smaller ones stay views. */
const DIRECT_PAYLOAD_BYTES = 64 * 1024;

/** What the server shares with each connection: its limits and the server-wide request budget. */
export interface ConnectionOptions {
  readonly limits?: ServerLimits;
  readonly budget?: RequestBudget;
}

export class Connection {
  readonly id: number;
  readonly counters = new RequestCounters();
  private readonly socket: Socket;
  private readonly registry: ExportRegistry;
  private log: Logger;
  private readonly queue = new ByteQueue();
  /** Set when the socket reads into our buffers (socket-receive.ts); null: 'data' events. */
  private readonly slab: ReceiveSlab | null;
  /** The last request header read was a WRITE whose payload went straight to its own buffer. */
  private lastWriteDirect = false;
  private state: State = 'flags';
  private session: Session = newSession(false);
  private option: { option: number; length: number } | null = null;
  private pending: PendingRequest | null = null;
  private tx: Transmission | null = null;
  private inFlight = 0;
  private inFlightBytes = 0;
  /** DISC seen or shutdown begun: read no more requests, close once in-flight ones are answered. */
  private stopReading = false;
  private shuttingDown = false;
  private waitingForDrain = false;
  /** The socket is corked until the end of this event-loop turn (see send()). */
  private corked = false;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  private readonly limits: ServerLimits;
  private readonly budget: RequestBudget;
  /** Closes a client that has not finished the handshake in time (ServerLimits.handshakeTimeoutMs). */
  private handshakeTimer: NodeJS.Timeout | null = null;
  private readonly wakeFromBudget = (): void => this.pump();

  constructor(id: number, socket: Socket, registry: ExportRegistry, log: Logger, options: ConnectionOptions = {}) {
    this.id = id;
    this.registry = registry;
    this.log = log;
    this.limits = options.limits ?? DEFAULT_SERVER_LIMITS;
    this.budget = options.budget ?? new RequestBudget(this.limits.maxInFlightTotal);
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
    const slab = new ReceiveSlab();
    const adopted = adoptWithUserBuffers(socket, {
      next: () => this.nextReadBuffer(slab),
      received: (n, buf) => this.received(slab, n, buf),
    });
    this.slab = adopted === null ? null : slab;
    this.socket = socket = adopted ?? socket;
    socket.setNoDelay(true);
    if (adopted === null) {
      socket.on('data', (chunk: Buffer) => {
        if (this.state === 'closed') return;
        this.queue.push(chunk);
        this.pump();
      });
      socket.resume(); // the listener accepts sockets paused
    }
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'socket error'));
    socket.on('close', () => this.onClose());
    socket.on('drain', () => {
      if (!this.waitingForDrain) return;
      this.waitingForDrain = false;
      this.pump();
    });
    socket.write(encodeGreeting(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES));
    const handshakeMs = this.limits.handshakeTimeoutMs;
    if (handshakeMs > 0) this.handshakeTimer = setTimeout(() => this.close(`no complete handshake within ${handshakeMs} ms`), handshakeMs);
  }

  /** The export this connection is in transmission with (null while negotiating). */
  get export(): Export | null {
    return this.tx?.export ?? null;
  }

  /** Resolves when the socket has closed. */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  /** Stop taking work: options get ERR_SHUTDOWN, new requests ESHUTDOWN; close once idle. */
  shutdown(): void {
    if (this.state === 'closed') return;
    this.shuttingDown = true;
    if (this.tx === null) {
      // Still negotiating: a client waiting for an option reply gets ERR_SHUTDOWN from pump().
      if (this.queue.length === 0) this.close('server shutting down');
      return;
    }
    this.stopReading = true;
    this.maybeFinish();
  }

  /** Closes now, whatever is in flight (used when shutdown's grace period runs out). */
  destroy(): void {
    this.socket.destroy();
  }

  /** Where the socket reads next: the rest of a large payload's buffer, or the slab. */
  private nextReadBuffer(slab: ReceiveSlab): Buffer {
    const into = this.pending?.into;
    if (this.state === 'request-payload' && into != null && this.pending!.remaining > 0) {
      return into.subarray(into.length - this.pending!.remaining);
    }
    // After a large WRITE the next is likely one too: read just its header, so that its payload
    // goes straight to its own buffer rather than into the slab and then copied (over TCP a
    // read returns all that has arrived, often much of the payload).
    if (this.lastWriteDirect && this.state === 'request-header' && this.queue.length === 0) {
      return slab.offer(this.tx!.validation.extended ? 32 : 28);
    }
    return slab.offer();
  }

  private received(slab: ReceiveSlab, n: number, buf: Buffer): void {
    if (this.state === 'closed') return;
    if (slab.offered(buf)) this.queue.push(slab.take(n));
    else this.pending!.remaining -= n; // straight into the payload's buffer
    this.pump();
  }

  private pump(): void {
    while (this.state !== 'closed') {
      if (!this.step()) break;
    }
    this.updateReading();
  }

  /**
   * Backpressure on input: while bytes we cannot parse yet pile up (busy, waiting for the client
   * to read its replies, or past DISC), stop reading the socket so they wait in the kernel, not
   * here. Every state that can make progress holds less than the limit, so this never stalls it.
   */
  private updateReading(): void {
    if (this.state === 'closed') return;
    if (this.queue.length > Limits.maxUnparsedInputBytes) this.socket.pause();
    else if (this.socket.isPaused()) this.socket.resume();
  }

  /** Does one unit of work if the bytes for it are there; says whether to keep going. */
  private step(): boolean {
    switch (this.state) {
      case 'flags':
        return this.readClientFlags();
      case 'option-header':
        return this.readOptionHeader();
      case 'option-data':
        return this.readOptionData();
      case 'request-header':
        return this.readRequestHeader();
      case 'request-payload':
        return this.readRequestPayload();
      case 'closed':
        return false;
    }
  }

  private readClientFlags(): boolean {
    const d = decodeClientFlags(this.queue.peek(4));
    if (!d.ok) return false;
    this.queue.skip(d.used);
    if ((d.value & ~CLIENT_FLAGS_KNOWN) !== 0) {
      this.close(`unknown client flags 0x${d.value.toString(16)}`);
      return false;
    }
    this.session = newSession((d.value & ClientFlag.C_NO_ZEROES) !== 0);
    this.state = 'option-header';
    return true;
  }

  private readOptionHeader(): boolean {
    if (this.waitingForDrain) return false;
    const d = decodeOptionHeader(this.queue.peek(16));
    if (!d.ok) {
      if (d.more === undefined) this.close(d.error.message);
      return false;
    }
    this.queue.skip(d.used);
    this.option = d.value;
    this.state = 'option-data';
    return true;
  }

  private readOptionData(): boolean {
    const { option, length } = this.option!;
    if (this.queue.length < length) return false;
    const data = this.queue.take(length);
    const result = handleOption(this.session, option, data, this.registry, this.shuttingDown);
    this.log.debug({ option: optName(option), length, result: result.kind }, 'option');
    for (const buf of result.replies) this.socket.write(buf);
    this.noteQueuedReplies();
    if (result.kind === 'close') {
      this.close(result.reason, true);
      return false;
    }
    if (result.kind === 'transmission') {
      this.enterTransmission(result.export);
    } else {
      this.state = 'option-header';
    }
    return true;
  }

  private enterTransmission(exp: Export): void {
    this.clearHandshakeTimer();
    this.startIdleTimer();
    const s = this.session;
    const style: HeaderStyle = s.extended ? 'extended' : s.structured ? 'structured' : 'simple';
    const flags = transmissionFlags(exp.device, s.structured);
    // A selection made for another export does not carry over (proto.md, SET_META_CONTEXT).
    const contexts = s.meta !== null && this.registry.find(s.meta.exportName) === exp ? s.meta.ids : new Map();
    this.tx = {
      export: exp,
      validation: {
        size: exp.device.size,
        readOnly: exp.device.readOnly,
        transmissionFlags: flags,
        minimumBlock: exp.device.blockSizes.minimum,
        extended: s.extended,
        hasMetaContext: contexts.size > 0,
      },
      dispatch: { device: exp.device, style, contexts },
    };
    this.log = this.log.child({ export: exp.name });
    this.log.info(
      { style, size: exp.device.size, flags: txFlagNames(flags), contexts: [...contexts.keys()] },
      'negotiated',
    );
    this.state = 'request-header';
  }

  private readRequestHeader(): boolean {
    if (this.stopReading || this.isBusy()) return false;
    const tx = this.tx!;
    const d = decodeRequest(this.queue.peek(32), tx.validation.extended);
    if (!d.ok) {
      if (d.more === undefined) this.close(d.error.message);
      return false;
    }
    this.queue.skip(d.used);
    const header = d.value;
    this.counters.count(header.type, header.flags);
    if (header.type === Cmd.DISC) {
      // No reply; answer everything in flight, then close (proto.md "NBD_CMD_DISC").
      this.log.debug('disconnect requested');
      this.stopReading = true;
      this.maybeFinish();
      return false;
    }
    const v = validateRequest(header, tx.validation);
    if (!v.ok && v.fatal) {
      this.close(v.message);
      return false;
    }
    let request = v.ok ? v.request : null;
    let rejection = v.ok ? null : { errno: toNbdErrno(new IomapdError(v.code, v.message)).errno, message: v.message };
    if (this.shuttingDown && rejection === null) {
      request = null;
      rejection = { errno: toNbdErrno(new IomapdError('SHUTTING_DOWN')).errno, message: 'the server is shutting down' };
    }
    const into = this.slab !== null && request !== null && v.payload >= DIRECT_PAYLOAD_BYTES ? takePayloadBuffer(v.payload) : null;
    this.lastWriteDirect = into !== null;
    this.pending = { header, request, rejection, remaining: v.payload, chunks: [], into };
    this.state = 'request-payload';
    return true;
  }

  /** Collects (or, for a rejected request, discards) the payload, then starts the request. */
  private readRequestPayload(): boolean {
    const p = this.pending!;
    if (p.remaining > 0) {
      if (this.queue.length === 0) return false;
      const n = Math.min(p.remaining, this.queue.length);
      // Accepted payloads are kept; rejected ones are dropped as they arrive, never buffered whole.
      if (p.into !== null) copyInto(this.queue, n, p.into, p.into.length - p.remaining);
      else if (p.request !== null) this.queue.takeViews(n, p.chunks);
      else this.queue.skip(n);
      p.remaining -= n;
      if (p.remaining > 0) return false;
    }
    this.pending = null;
    this.state = 'request-header';
    if (p.request === null) {
      const r = p.rejection!;
      this.traceRequest(p.header, r.errno);
      const to = { cookie: p.header.cookie, wireOffset: p.header.offset };
      this.send([errorReply(this.tx!.dispatch.style, to, r.errno, r.message)]);
      return true;
    }
    const payload = p.into ?? (p.chunks.length === 0 ? null : p.chunks.length === 1 ? p.chunks[0]! : gather(p.chunks));
    this.start(p.request, payload);
    return true;
  }

  private start(req: ValidRequest, payload: Buffer | null): void {
    // Memory the request holds until it is answered: its WRITE payload, or its READ reply buffer.
    const bytes = (payload?.length ?? 0) + (req.type === Cmd.READ ? req.length : 0);
    this.budget.take();
    this.inFlight++;
    this.inFlightBytes += bytes;
    const tx = this.tx!;
    dispatch(tx.dispatch, req, payload).then(
      (reply) => {
        if (payload !== null) payloadDone(payload);
        this.finish(req, bytes, reply, 0);
      },
      (err: unknown) => {
        const { errno, message, isExpected } = toNbdErrno(err);
        if (!isExpected) this.log.error({ err, command: cmdName(req.type) }, 'request failed with an unexpected error');
        else this.log.warn({ command: cmdName(req.type), offset: req.offset, length: req.length, error: errName(errno), reason: message }, 'request failed');
        this.finish(req, bytes, [errorReply(tx.dispatch.style, req, errno, message)], errno);
      },
    );
  }

  private finish(req: ValidRequest, bytes: number, reply: Reply, errno: number): void {
    this.inFlight--;
    this.inFlightBytes -= bytes;
    this.traceRequest(req, errno);
    this.send(reply);
    if (this.stopReading) this.maybeFinish();
    else this.pump();
    // Last: giving the slot back may wake other connections (and this one), which then read on.
    this.budget.give();
  }

  private traceRequest(req: { type: number; flags: number; offset: bigint | number; length: bigint | number }, errno: number): void {
    if (!this.log.isLevelEnabled('trace')) return;
    this.log.trace(
      { command: cmdName(req.type), flags: cmdFlagNames(req.flags), offset: Number(req.offset), length: Number(req.length), result: errName(errno) },
      'request',
    );
  }

  /**
   * Queues one reply as a unit. Replies finished in the same turn of the event loop go out together:
   * the first corks the socket and a setImmediate (after every I/O completion of this turn) uncorks
   * it, so a burst of replies costs one writev, not one write each (docs/PERFORMANCE.md).
   */
  private send(reply: Reply): void {
    if (this.state === 'closed' || this.socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(this.uncork);
    }
    for (const buf of reply) writeReply(this.socket, buf);
    this.noteQueuedReplies();
  }

  private readonly uncork = (): void => {
    this.corked = false;
    // end() and destroy() flush or drop what is corked themselves; uncork() is then a no-op.
    this.socket.uncork();
  };

  /** Backpressure on output: a client that stops reading its replies stops us reading its requests. */
  private noteQueuedReplies(): void {
    if (this.socket.writableLength > Limits.maxQueuedReplyBytes) this.waitingForDrain = true;
  }

  private isBusy(): boolean {
    if (this.waitingForDrain || this.inFlight >= this.limits.maxInFlightPerConnection || this.inFlightBytes >= Limits.maxInFlightBytesPerConnection) {
      return true;
    }
    if (!this.budget.exhausted) return false;
    // The server-wide cap is reached: read on once any connection answers a request.
    this.budget.waitForSlot(this.wakeFromBudget);
    return true;
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer === null) return;
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  /**
   * ServerLimits.idleTimeoutMs: no traffic either way for that long while nothing is in flight
   * closes the connection (a request that takes long keeps it, its reply is still owed).
   */
  private startIdleTimer(): void {
    const ms = this.limits.idleTimeoutMs;
    if (ms <= 0) return;
    this.socket.setTimeout(ms);
    this.socket.on('timeout', () => {
      if (this.inFlight === 0) this.close(`idle for ${ms} ms`);
    });
  }

  private maybeFinish(): void {
    if (this.inFlight > 0 || this.state === 'closed') return;
    this.close(this.shuttingDown ? 'server shutting down' : 'client disconnected', true);
  }

  private onEnd(): void {
    // EOF: finish what is in flight (a client may half-close after DISC), then close.
    this.stopReading = true;
    if (this.tx === null) this.close('client closed during the handshake');
    else this.maybeFinish();
  }

  /** Ends the connection; `graceful` lets queued replies reach the client first. */
  private close(reason: string, graceful = false): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.releaseTimers();
    this.log.info({ reason, requests: this.counters.snapshot() }, 'connection closed');
    if (graceful) {
      this.socket.end();
      // Reading may have been paused for backpressure: resume, so the client's FIN is seen.
      this.socket.resume();
      // A client that never closes its side must not hold the socket for ever (allowHalfOpen).
      setTimeout(() => this.socket.destroy(), Limits.closeLingerMs).unref();
    } else {
      this.socket.destroy();
    }
  }

  private releaseTimers(): void {
    this.clearHandshakeTimer();
    this.budget.cancel(this.wakeFromBudget);
    this.socket.setTimeout(0);
  }

  private onClose(): void {
    this.releaseTimers();
    if (this.state !== 'closed') {
      this.state = 'closed';
      this.log.info({ reason: 'socket closed', requests: this.counters.snapshot() }, 'connection closed');
    }
    this.resolveClosed();
  }
}

/** Moves the first `n` queued bytes into `out` at `at`. */
function copyInto(queue: ByteQueue, n: number, out: Buffer, at: number): void {
  const views: Buffer[] = [];
  queue.takeViews(n, views);
  for (const v of views) at += v.copy(out, at);
}

/** One WRITE payload from the views it arrived in, copied once into a pooled buffer. */
function gather(views: readonly Buffer[]): Buffer {
  let total = 0;
  for (const v of views) total += v.length;
  const out = takePayloadBuffer(total);
  let at = 0;
  for (const v of views) at += v.copy(out, at);
  return out;
}
