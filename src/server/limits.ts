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
} as const;
