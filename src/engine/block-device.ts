// What the server needs from whatever stands behind an export: a raw file, memory, or (issue 4)
// the image store through the direct-I/O engine. Requests arrive already validated (bounds,
// alignment, advertised flags, read-only): implementations assert, they do not re-validate.
// Failures are thrown as IomapdError (src/util/errors.ts); the server maps them to NBD errnos.

export interface BlockSizes {
  /** Offsets and lengths must be multiples of this (a power of two, <= 64 KiB). */
  readonly minimum: number;
  /** Below this the device does read-modify-write (the allocation block). */
  readonly preferred: number;
  /** The largest WRITE payload or simple READ this device takes in one request. */
  readonly maximum: number;
}

/** What a device can do; the server advertises transmission flags from this alone. */
export interface DeviceCapabilities {
  readonly flush: boolean;
  readonly fua: boolean;
  readonly trim: boolean;
  readonly writeZeroes: boolean;
  /** FAST_ZERO: zeroing can say "not fast" (ENOTSUP) up front instead of writing zeroes. */
  readonly fastZero: boolean;
  readonly cache: boolean;
  /** Whether blockStatus reports real holes and zeroes (otherwise everything is data). */
  readonly sparse: boolean;
  /** Every connection sees one view and one flush barrier. */
  readonly multiConn: boolean;
  readonly rotational: boolean;
}

/**
 * A device that does everything iomapd can advertise (every command, FUA, FAST_ZERO, one view for
 * all connections, not rotational), with `sparse` saying whether block status finds holes.
 */
export function fullCapabilities(sparse: boolean): DeviceCapabilities {
  return Object.freeze({
    flush: true,
    fua: true,
    trim: true,
    writeZeroes: true,
    fastZero: true,
    cache: true,
    sparse,
    multiConn: true,
    rotational: false,
  });
}

export interface WriteOptions {
  /** Durable before the promise resolves (NBD_CMD_FLAG_FUA). */
  readonly fua: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /** The zeroed range may become a hole (false when the client sent NO_HOLE). */
  readonly mayTrim: boolean;
  /** Fail with FAST_ZERO_UNAVAILABLE rather than zero slowly (NBD_CMD_FLAG_FAST_ZERO). */
  readonly fast: boolean;
}

/** One run of a block-status answer, in base:allocation terms. */
export interface DeviceExtent {
  readonly length: number;
  /** No storage is allocated here. */
  readonly hole: boolean;
  /** Reads here return zeroes. */
  readonly zero: boolean;
}

/** One run of the iomapd:mapping context; `flags` carries the bits of docs/CONTEXTS.md. */
export interface MappingExtent {
  readonly length: number;
  readonly flags: number;
}

/** One run of a 32-bit status context (qemu:dirty-bitmap:, qemu:allocation-depth). */
export interface StatusRun {
  readonly length: number;
  readonly flags: number;
}

/**
 * A volume's history, for the qemu: contexts (docs/BACKUP.md). Answers follow blockStatus's shape
 * rules; a point deleted meanwhile fails with NOT_FOUND.
 */
export interface VolumeHistory {
  /** Snapshots that are earlier points of this volume's history, oldest first. */
  points(): string[];
  /** Bit 0 (NBD_STATE_DIRTY) set where the volume may differ from snapshot `from`. */
  dirty(from: string, offset: number, length: number): Promise<StatusRun[]>;
  /** 0 hole, 1 the volume's own block, k + 1 a block the k nearest origins hold at the same place. */
  depth(offset: number, length: number): Promise<StatusRun[]>;
}

export interface BlockDevice {
  readonly size: number;
  readonly readOnly: boolean;
  readonly blockSizes: BlockSizes;
  readonly capabilities: DeviceCapabilities;

  /** Fills `into` with the bytes at `offset` (reads go straight into the reply buffer). */
  read(into: Buffer, offset: number): Promise<void>;
  /**
   * Optional fast path: reads the whole range now, synchronously, when it is plain data the device
   * can read without waiting (mapped, and in the page cache as far as the inline read gate can
   * tell). Returns false when the caller must use blockStatus/read instead. Throws on I/O error.
   * Synchronous on purpose: nothing else runs between the lookup and the read, so no pin is needed.
   */
  readNow?(into: Buffer, offset: number): boolean;
  write(data: Buffer, offset: number, options: WriteOptions): Promise<void>;
  /** Makes every write that completed before the call durable. */
  flush(): Promise<void>;
  /** After a TRIM the range reads as zeroes (iomapd promises this although NBD does not). */
  trim(offset: number, length: number, options: WriteOptions): Promise<void>;
  zero(offset: number, length: number, options: ZeroOptions): Promise<void>;
  /** A prefetch hint; may do nothing. */
  cache(offset: number, length: number): Promise<void>;
  /**
   * Describes at least the first byte of `[offset, offset+length)` and at most the whole range;
   * extents are contiguous from `offset` and each has length > 0.
   */
  blockStatus(offset: number, length: number): Promise<DeviceExtent[]>;
  /**
   * The iomapd:mapping context, with blockStatus's shape rules. Optional: an export whose device
   * lacks it does not offer the context (raw files and memory have no mapping types).
   */
  mappingStatus?(offset: number, length: number): Promise<MappingExtent[]>;
  /** Optional: a device with a history offers the qemu: contexts (image volumes only). */
  readonly history?: VolumeHistory;
  close(): Promise<void>;
}
