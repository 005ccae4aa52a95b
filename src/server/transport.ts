// The socket side of a connection: how bytes come in (socket-receive.ts: reads into our own
// buffers, or 'data' events where that cannot be), the queue they wait in to be parsed, both
// socket backpressures, replies batched per turn of the event loop, closing, and the switch to a
// TLSSocket after STARTTLS (which reads through 'data' events: Node's TLS decrypts into its own
// buffers, so reading into ours does not apply). Plain connections never pay for TLS.
//
// Backpressure: while bytes we cannot parse yet pile up (busy, waiting for the client to read its
// replies, or past DISC) the socket is paused, so they wait in the kernel, not here; a client that
// stops reading its replies stops us parsing its requests until the socket drains.
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ByteQueue } from '../protocol/framer.ts';
import { destroyAfterLinger } from './connection-timers.ts';
import { writeReply } from './io-buffers.ts';
import { Limits } from './limits.ts';
import { ReceiveSlab, adoptWithUserBuffers } from './socket-receive.ts';

/**
 * What the transport tells, and asks of, the connection it carries. Made once per connection;
 * directTarget() and slabReadLimit() are first called from the Transport's constructor.
 */
export interface TransportEvents {
  /** The buffer the next read goes straight into (the rest of a large payload's own), or null. */
  directTarget(): Buffer | null;
  /** At most this many bytes for the next read into the slab (0: no limit). */
  slabReadLimit(): number;
  /** `n` bytes were read straight into directTarget()'s buffer. */
  receivedDirect(n: number): void;
  /** Bytes arrived, or the client read its replies: parse and start what can be. */
  pump(): void;
  /** The client closed its side (EOF). */
  ended(): void;
  error(err: Error): void;
  /** The socket has closed. */
  closed(): void;
}

export class Transport {
  /** Received bytes not yet parsed. */
  readonly queue = new ByteQueue();
  /** The socket itself: the adopted one when it reads into our buffers, the TLSSocket after STARTTLS. */
  private current: Socket;
  /** The socket TLS was started over (closed with the TLSSocket); null until STARTTLS. */
  private plain: Socket | null = null;
  /** Whether the socket reads into buffers we choose, so a large payload can land in its own. */
  private ownBuffers: boolean;
  private readonly slab = new ReceiveSlab();
  private readonly events: TransportEvents;
  private waitingForDrainFlag = false;
  /** The socket is corked until the end of this event-loop turn (see send()). */
  private corked = false;
  /** Closed, or closing: input is ignored and replies are dropped. */
  private closed = false;

  constructor(socket: Socket, events: TransportEvents) {
    this.events = events;
    const adopted = adoptWithUserBuffers(socket, {
      next: () => this.nextReadBuffer(),
      received: (n, buf) => this.received(n, buf),
    });
    this.ownBuffers = adopted !== null;
    this.current = socket = adopted ?? socket;
    socket.setNoDelay(true);
    if (adopted === null) {
      this.readDataEvents(socket);
      socket.resume(); // the listener accepts sockets paused
    }
    this.listen(socket);
  }

  get socket(): Socket {
    return this.current;
  }

  get readsIntoOwnBuffers(): boolean {
    return this.ownBuffers;
  }

  private readDataEvents(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      if (this.closed) return;
      this.queue.push(chunk);
      this.events.pump();
    });
  }

  private listen(socket: Socket): void {
    const events = this.events;
    socket.on('end', () => events.ended());
    socket.on('error', (err) => events.error(err));
    socket.on('close', () => {
      this.closed = true;
      events.closed();
    });
    socket.on('drain', () => {
      if (!this.waitingForDrainFlag) return;
      this.waitingForDrainFlag = false;
      events.pump();
    });
  }

  /**
   * STARTTLS: from now on the connection reads and writes through the TLSSocket `wrap` makes over
   * the current socket. Called with nothing left unparsed and the ACK already written.
   */
  startTls(wrap: (plain: Socket) => TLSSocket): void {
    const plain = this.current;
    plain.removeAllListeners('data');
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    plain.removeAllListeners('drain');
    const tls = wrap(plain);
    this.plain = plain;
    this.current = tls;
    this.ownBuffers = false;
    this.readDataEvents(tls);
    this.listen(tls);
  }

  /** The client is not reading its replies: parse no more requests until the socket drains. */
  get waitingForDrain(): boolean {
    return this.waitingForDrainFlag;
  }

  /** Where the socket reads next: the rest of a large payload's buffer, or the slab. */
  private nextReadBuffer(): Buffer {
    const direct = this.events.directTarget();
    if (direct !== null) return direct;
    if (this.queue.length === 0) {
      const limit = this.events.slabReadLimit();
      if (limit > 0) return this.slab.offer(limit);
    }
    return this.slab.offer();
  }

  private received(n: number, buf: Buffer): void {
    if (this.closed) return;
    if (this.slab.offered(buf)) this.queue.push(this.slab.take(n));
    else this.events.receivedDirect(n);
    this.events.pump();
  }

  /** Input backpressure, after each parse: every state that can make progress holds less than the limit, so this never stalls it. */
  updateReading(): void {
    if (this.closed) return;
    if (this.queue.length > Limits.maxUnparsedInputBytes) this.socket.pause();
    else if (this.socket.isPaused()) this.socket.resume();
  }

  /** Writes handshake bytes (the greeting, option replies) as they come: no batching. */
  writeHandshake(bufs: readonly Buffer[]): void {
    for (const buf of bufs) this.socket.write(buf);
    this.noteQueuedReplies();
  }

  /**
   * Queues one reply as a unit. Replies finished in the same turn of the event loop go out together:
   * the first corks the socket and a setImmediate (after every I/O completion of this turn) uncorks
   * it, so a burst of replies costs one writev, not one write each (docs/PERFORMANCE.md).
   */
  send(reply: readonly Buffer[]): void {
    if (this.closed || this.socket.destroyed) return;
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

  /** Output backpressure: a client that stops reading its replies stops us reading its requests. */
  private noteQueuedReplies(): void {
    if (this.socket.writableLength > Limits.maxQueuedReplyBytes) this.waitingForDrainFlag = true;
  }

  /** Ends the connection; `graceful` lets queued replies reach the client first. */
  close(graceful: boolean): void {
    this.closed = true;
    if (graceful) {
      this.socket.end();
      // Reading may have been paused for backpressure: resume, so the client's FIN is seen.
      this.socket.resume();
      destroyAfterLinger(this.current);
      if (this.plain !== null) destroyAfterLinger(this.plain);
    } else {
      this.destroy();
    }
  }

  /** Closes now, whatever is queued. */
  destroy(): void {
    this.current.destroy();
    this.plain?.destroy();
  }
}
