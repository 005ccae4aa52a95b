// One client connection: an explicit state table over a byte queue (style.md habit 4).
//
//   flags -> option-header -> option-data -> option-header ... -> request-header
//   option-data -> tls-handshake -> option-header                (STARTTLS; tls/upgrade.ts)
//   request-header -> request-payload -> request-header ...      (payload only when one follows)
//   any state -> closed                                          (fatal error, EOF, ABORT, DISC)
//
// Two kinds of error: fatal ones close the socket (bad magic, unknown client flags, absurd
// lengths); per-request ones get an error reply after a rejected WRITE's payload is drained.
// Replies go out in completion order, each written as one unit.
//
// This file holds the states and their handlers; the rest has rooms of its own: the socket, its
// input queue, backpressure, reply batching and closing (transport.ts), where payloads land
// (payload-landing.ts), requests in flight, their replies and budgets (requests-in-flight.ts), timers
// (connection-timers.ts) and pooled buffers (io-buffers.ts).
import type { Socket } from 'node:net';
import { ClientFlag, Cmd, HandshakeFlag } from '../protocol/constants.ts';
import { decodeClientFlags, decodeOptionHeader, encodeGreeting } from '../protocol/handshake.ts';
import { optName, txFlagNames } from '../protocol/names.ts';
import { decodeRequest, type Request } from '../protocol/transmission.ts';
import type { Logger } from '../util/log.ts';
import { ConnectionTimers } from './connection-timers.ts';
import type { Reply } from './dispatch.ts';
import { rejection, type Rejection } from './errno.ts';
import type { Export, ExportRegistry } from './export-registry.ts';
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from './limits.ts';
import { handleOption, newSession, type Session } from './negotiation.ts';
import { PayloadLanding } from './payload-landing.ts';
import { errorReply } from './replies.ts';
import { RequestBudget } from './request-budget.ts';
import { RequestCounters } from './request-counters.ts';
import type { RequestMetricsTable } from './request-metrics.ts';
import { RequestsInFlight, traceRequest } from './requests-in-flight.ts';
import { transmissionContext, type Transmission } from './transmission-context.ts';
import type { Credentials } from './tls/credentials.ts';
import { upgradeToTls, type TlsOutcome } from './tls/upgrade.ts';
import { Transport } from './transport.ts';
import { validateRequest, type ValidRequest } from './validate.ts';

type State = 'flags' | 'option-header' | 'option-data' | 'tls-handshake' | 'request-header' | 'request-payload' | 'closed';

const CLIENT_FLAGS_KNOWN = ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES;

/** What the server shares with each connection: its limits and the server-wide request budget. */
export interface ConnectionOptions {
  readonly limits?: ServerLimits;
  readonly budget?: RequestBudget;
  /** The TLS material current now (taken once, at STARTTLS); absent or null: no TLS. */
  readonly credentials?: () => Credentials | null;
  /** Per-export request metrics (`serve --metrics`); absent or null: none kept. */
  readonly metrics?: RequestMetricsTable | null;
}

export class Connection {
  readonly id: number;
  readonly counters = new RequestCounters();
  private readonly registry: ExportRegistry;
  private log: Logger;
  private readonly limits: ServerLimits;
  private readonly credentials: () => Credentials | null;
  private readonly metrics: RequestMetricsTable | null;
  private readonly transport: Transport;
  private readonly landing = new PayloadLanding();
  private readonly requests: RequestsInFlight;
  private readonly timers: ConnectionTimers;
  private state: State = 'flags';
  private session: Session = newSession(false);
  private option: { option: number; length: number } | null = null;
  /** In 'request-payload': the header read, and either the request it makes or why it was rejected. */
  private header: Request | null = null;
  private request: ValidRequest | null = null;
  private rejection: Rejection | null = null;
  private tx: Transmission | null = null;
  /** DISC seen or shutdown begun: read no more requests, close once in-flight ones are answered. */
  private stopReading = false;
  private shuttingDown = false;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(id: number, socket: Socket, registry: ExportRegistry, log: Logger, options: ConnectionOptions = {}) {
    this.id = id;
    this.registry = registry;
    this.log = log;
    const limits = (this.limits = options.limits ?? DEFAULT_SERVER_LIMITS);
    this.credentials = options.credentials ?? (() => null);
    this.metrics = options.metrics ?? null;
    const budget = options.budget ?? new RequestBudget(limits.maxInFlightTotal);
    // A socket with no remote address is a Unix socket (or a test's socket pair).
    const overUnixSocket = socket.remoteAddress === undefined;
    this.requests = new RequestsInFlight(limits.maxInFlightPerConnection, budget, () => this.pump(), (reply) => this.answered(reply), overUnixSocket);
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
    // The transport asks for its first read buffer while it adopts the socket: before it returns.
    this.transport = new Transport(socket, {
      directTarget: () => (this.state === 'request-payload' ? this.landing.directTarget() : null),
      slabReadLimit: () => this.slabReadLimit(),
      receivedDirect: (n) => this.landing.receivedDirect(n),
      pump: () => this.pump(),
      ended: () => this.onEnd(),
      error: (err) => this.log.debug({ err: err.message }, 'socket error'),
      closed: () => this.onClose(),
    });
    this.timers = new ConnectionTimers(() => this.transport.socket);
    this.transport.writeHandshake([encodeGreeting(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES)]);
    const handshakeMs = limits.handshakeTimeoutMs;
    this.timers.startHandshake(handshakeMs, () => this.close(`no complete handshake within ${handshakeMs} ms`));
  }

  /**
   * After a large WRITE the next is likely one too: read just its header, so that its payload
   * goes straight to its own buffer rather than into the slab and then copied (over TCP a read
   * returns all that has arrived, often much of the payload). 0: no limit.
   */
  private slabReadLimit(): number {
    if (!this.landing.lastWasDirect || this.state !== 'request-header') return 0;
    return this.tx!.validation.extended ? 32 : 28;
  }

  /** The export this connection is in transmission with (null while negotiating). */
  get export(): Export | null {
    return this.tx?.export ?? null;
  }

  /** Requests started and not yet answered (metrics read it at scrape time). */
  get inFlight(): number {
    return this.requests.count;
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
      if (this.transport.queue.length === 0) this.close('server shutting down');
      return;
    }
    this.stopReading = true;
    this.maybeFinish();
  }

  /** Closes now, whatever is in flight (used when shutdown's grace period runs out). */
  destroy(): void {
    this.transport.destroy();
  }

  private pump(): void {
    while (this.state !== 'closed') {
      if (!this.step()) break;
    }
    this.transport.updateReading();
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
      case 'tls-handshake':
        return false;
      case 'request-header':
        return this.readRequestHeader();
      case 'request-payload':
        return this.readRequestPayload();
      case 'closed':
        return false;
    }
  }

  private readClientFlags(): boolean {
    const queue = this.transport.queue;
    const d = decodeClientFlags(queue.peek(4));
    if (!d.ok) return false;
    queue.skip(d.used);
    if ((d.value & ~CLIENT_FLAGS_KNOWN) !== 0) {
      this.close(`unknown client flags 0x${d.value.toString(16)}`);
      return false;
    }
    this.session = newSession((d.value & ClientFlag.C_NO_ZEROES) !== 0);
    this.state = 'option-header';
    return true;
  }

  private readOptionHeader(): boolean {
    if (this.transport.waitingForDrain) return false;
    const queue = this.transport.queue;
    const d = decodeOptionHeader(queue.peek(16));
    if (!d.ok) {
      if (d.more === undefined) this.close(d.error.message);
      return false;
    }
    queue.skip(d.used);
    this.option = d.value;
    this.state = 'option-data';
    return true;
  }

  private readOptionData(): boolean {
    const { option, length } = this.option!;
    const queue = this.transport.queue;
    if (queue.length < length) return false;
    const data = queue.take(length);
    const result = handleOption(this.session, option, data, this.registry, this.shuttingDown);
    this.log.debug({ option: optName(option), length, result: result.kind }, 'option');
    if ((result.kind === 'continue' || result.kind === 'close') && result.refused !== undefined) {
      // The client is told no more than for an unknown name; the log says who asked for what.
      this.log.warn({ ...result.refused, option: optName(option), tls: this.session.tls !== null, identities: this.session.tls?.identities ?? [] }, 'export refused');
    }
    this.transport.writeHandshake(result.replies);
    if (result.kind === 'starttls') {
      this.startTls();
      return false;
    }
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

  /** After STARTTLS's ACK: the handshake deadline keeps running through the TLS handshake. */
  private startTls(): void {
    const credentials = this.credentials();
    if (credentials === null) throw new Error('STARTTLS accepted without TLS credentials'); // negotiation answers ERR_UNSUP then
    // The client must wait for the ACK before its ClientHello: plain bytes past STARTTLS are a violation.
    if (this.transport.queue.length > 0) {
      this.close('data after STARTTLS before its reply', true);
      return;
    }
    this.state = 'tls-handshake';
    this.transport.startTls((plain) => upgradeToTls(plain, credentials, (outcome) => this.tlsDone(outcome)));
  }

  private tlsDone(outcome: TlsOutcome): void {
    if (this.state !== 'tls-handshake') return;
    if (!outcome.ok) {
      this.close(outcome.reason);
      return;
    }
    // proto.md: after STARTTLS all negotiated state is discarded; the client starts over.
    this.session = { ...newSession(this.session.noZeroes), tls: outcome.session };
    const { version, cipher, identities } = outcome.session;
    this.log.debug({ version, cipher, identities }, 'TLS established');
    this.state = 'option-header';
    this.pump();
  }

  private enterTransmission(exp: Export): void {
    this.timers.endHandshake();
    const idleMs = this.limits.idleTimeoutMs;
    // A request that takes long keeps the connection: its reply is still owed.
    this.timers.startIdle(idleMs, () => {
      if (this.requests.count === 0) this.close(`idle for ${idleMs} ms`);
    });
    const tx = (this.tx = transmissionContext(this.session, exp, this.registry, this.metrics?.forExport(exp.name) ?? null));
    const { style, contexts } = tx.dispatch;
    this.log = this.log.child({ export: exp.name });
    const tls = this.session.tls;
    this.log.info(
      {
        style,
        size: exp.device.size,
        flags: txFlagNames(tx.validation.transmissionFlags),
        contexts: [...contexts.keys()],
        tls: tls !== null,
        ...(tls === null ? {} : { tlsVersion: tls.version, cipher: tls.cipher, identities: tls.identities }),
      },
      'negotiated',
    );
    this.state = 'request-header';
  }

  private readRequestHeader(): boolean {
    if (this.stopReading || this.transport.waitingForDrain || this.requests.atLimit()) return false;
    const tx = this.tx!;
    const queue = this.transport.queue;
    const d = decodeRequest(queue.peek(32), tx.validation.extended);
    if (!d.ok) {
      if (d.more === undefined) this.close(d.error.message);
      return false;
    }
    queue.skip(d.used);
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
    this.header = header;
    if (!v.ok) {
      this.request = null;
      this.rejection = rejection(v.code, v.message);
    } else if (this.shuttingDown) {
      this.request = null;
      this.rejection = rejection('SHUTTING_DOWN', 'the server is shutting down');
    } else {
      this.request = v.request;
      this.rejection = null;
    }
    this.landing.expect(v.payload, this.request !== null, this.transport.readsIntoOwnBuffers);
    this.state = 'request-payload';
    return true;
  }

  /** Collects (or, for a rejected request, discards) the payload, then starts the request. */
  private readRequestPayload(): boolean {
    if (!this.landing.collect(this.transport.queue)) return false;
    const payload = this.landing.take();
    const header = this.header!;
    const request = this.request;
    this.header = this.request = null;
    this.state = 'request-header';
    if (request === null) {
      const r = this.rejection!;
      this.rejection = null;
      traceRequest(this.log, header, r.errno);
      this.tx!.dispatch.metrics?.record(header.type, r.errno, 0, 0);
      const to = { cookie: header.cookie, wireOffset: header.offset };
      this.transport.send([errorReply(this.tx!.dispatch.style, to, r.errno, r.message)]);
      return true;
    }
    this.requests.start(this.tx!.dispatch, request, payload, this.log);
    return true;
  }

  /** A request is answered: its reply goes out, then the next request may be read. */
  private answered(reply: Reply): void {
    this.transport.send(reply);
    if (this.stopReading) this.maybeFinish();
    else this.pump();
  }

  private maybeFinish(): void {
    if (this.requests.count > 0 || this.state === 'closed') return;
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
    this.stopTimers();
    this.log.info({ reason, requests: this.counters.snapshot() }, 'connection closed');
    this.transport.close(graceful);
  }

  private stopTimers(): void {
    this.timers.stop();
    this.requests.stopWaiting();
  }

  private onClose(): void {
    this.stopTimers();
    if (this.state !== 'closed') {
      this.state = 'closed';
      this.log.info({ reason: 'socket closed', requests: this.counters.snapshot() }, 'connection closed');
    }
    this.resolveClosed();
  }
}
