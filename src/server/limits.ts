// Sizes and counts the server bounds everything by, so no client can make it buffer without end.

const MiB = 1024 * 1024;

export const Limits = {
  /** Advertised maximum payload (INFO_BLOCK_SIZE). */
  advertisedMaxPayload: 32 * MiB,
  /**
   * What we actually accept in one WRITE or READ: nbd-tester-client's integrityhuge sends ~47.6 MiB
   * without negotiating, and libnbd and nbdkit both cap at 64 MiB (protocol.md §4).
   */
  acceptedMaxPayload: 64 * MiB,
  /** A rejected WRITE payload up to this size is read and discarded; beyond it we disconnect. */
  drainLimit: 64 * MiB,
  /** Requests being served at once on one connection before we stop reading from it. */
  maxInFlightPerConnection: 256,
  /** Bytes held by in-flight requests of one connection (WRITE payloads, READ reply buffers) before we stop reading. */
  maxInFlightBytesPerConnection: 256 * MiB,
  /** Reply bytes queued on a socket the client is not reading, before we stop reading requests. */
  maxQueuedReplyBytes: 64 * MiB,
  /**
   * Received bytes not yet parsed before we stop reading the socket. Above the largest unit that
   * must be whole before it is parsed (a 64 KiB option and its 16-byte header).
   */
  maxUnparsedInputBytes: 1 * MiB,
  /** DF reads larger than this get EOVERFLOW (the spec requires 64 KiB to work). */
  maxDfRead: 64 * MiB,
  /** How long shutdown waits for in-flight requests before closing connections anyway. */
  shutdownGraceMs: 15_000,
  /** After a graceful close (DISC, ABORT), how long a client may keep its half of the socket open. */
  closeLingerMs: 30_000,
} as const;

/**
 * Limits an operator sets per server (`iomapd serve` options, README "Limits"), so that no client
 * or crowd of clients can hold resources without end. The defaults suit kernel clients, which keep
 * idle connections open for as long as the device is attached: hence no idle timeout by default.
 */
export interface ServerLimits {
  /** Connections served at once; further ones are closed right after accept, and logged. */
  readonly maxConnections: number;
  /** Requests in flight on one connection before it stops reading requests. */
  readonly maxInFlightPerConnection: number;
  /** Requests in flight over all connections before every connection stops reading requests. */
  readonly maxInFlightTotal: number;
  /** Milliseconds a client has from accept to the end of the handshake (0: no limit). */
  readonly handshakeTimeoutMs: number;
  /** Milliseconds a connection in transmission may sit with nothing in flight and no traffic (0: off). */
  readonly idleTimeoutMs: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  maxConnections: 1024,
  maxInFlightPerConnection: Limits.maxInFlightPerConnection,
  maxInFlightTotal: 8192,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 0,
};

/** Defaults for whatever `partial` leaves out; every value must be a non-negative integer (counts positive). */
export function serverLimits(partial: Partial<ServerLimits> = {}): ServerLimits {
  const limits = { ...DEFAULT_SERVER_LIMITS, ...partial };
  for (const [name, value] of Object.entries(limits)) {
    const isCount = name.startsWith('max');
    if (!Number.isSafeInteger(value) || value < (isCount ? 1 : 0)) throw new RangeError(`limit ${name} must be ${isCount ? 'a positive' : 'a non-negative'} integer, got ${value}`);
  }
  return limits;
}
