// A connection's clocks: the handshake deadline (ServerLimits.handshakeTimeoutMs), the idle timeout
// in transmission (ServerLimits.idleTimeoutMs, the socket's own inactivity timer) and the linger
// after a graceful close (Limits.closeLingerMs). None of them runs per request.
import type { Socket } from 'node:net';
import { Limits } from './limits.ts';

export class ConnectionTimers {
  /** The connection's socket now (it becomes a TLSSocket after STARTTLS). */
  private readonly socketNow: () => Socket;
  private handshake: NodeJS.Timeout | null = null;

  constructor(socket: () => Socket) {
    this.socketNow = socket;
  }

  private get socket(): Socket {
    return this.socketNow();
  }

  /** Calls `expired` unless endHandshake() comes within `ms` (0: no deadline). */
  startHandshake(ms: number, expired: () => void): void {
    if (ms > 0) this.handshake = setTimeout(expired, ms);
  }

  endHandshake(): void {
    if (this.handshake === null) return;
    clearTimeout(this.handshake);
    this.handshake = null;
  }

  /** Calls `idle` after every `ms` with no traffic either way (0: never); the caller decides whether to close. */
  startIdle(ms: number, idle: () => void): void {
    if (ms <= 0) return;
    this.socket.setTimeout(ms);
    this.socket.on('timeout', idle);
  }

  /** Stops the handshake deadline and the idle timeout: the connection is closing. */
  stop(): void {
    this.endHandshake();
    this.socket.setTimeout(0);
  }
}

/**
 * After a graceful close: a client that never closes its side must not hold the socket for ever
 * (allowHalfOpen). The timer goes as soon as the socket closes: while pending it keeps the socket,
 * and through it the connection and its buffers, reachable (a crowd of short connections held
 * hundreds of MiB for the 30 s linger).
 */
export function destroyAfterLinger(socket: Socket): void {
  const timer = setTimeout(() => socket.destroy(), Limits.closeLingerMs).unref();
  socket.once('close', () => clearTimeout(timer));
}
