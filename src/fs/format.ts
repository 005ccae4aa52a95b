// Constants of the on-disk format (versions 1 to 3). The layout is described in docs/FORMAT.md.
/**
 * The newest format this code reads and the one every checkpoint writes: version 3 keeps extent
 * maps in tree nodes written incrementally. Versions 1 and 2 are read and upgraded by the first
 * checkpoint after a writable open.
 */
export const FORMAT_VERSION = 3;
/** The object-store image's manifests start here (its checkpoints use the whole codec). */
export const BASE_FORMAT_VERSION = 1;
/**
 * An image moves to version 2 before its first REQUIRE_TLS flag or VOL_SET_FLAGS op: a release
 * that knows neither refuses it (FORMAT_TOO_NEW) instead of serving that volume without TLS.
 */
export const REQUIRE_TLS_FORMAT_VERSION = 2;
/**
 * An image moves to version 3 before its first snapshot or clone is logged: from then on its
 * checkpoints record each volume's origin (tree format, or whole checkpoint version 2), which
 * version-2 code cannot read.
 */
export const LINEAGE_FORMAT_VERSION = 3;
export const SUPERBLOCK_SLOT = 4096;
export const SUPERBLOCK_COPIES = 2;
export const SECTOR = 512;
export const MIN_BLOCK_SIZE = 4096;
export const MAX_BLOCK_SIZE = 65536;
/** A volume of at most this many bytes keeps its data inside its metadata record. */
export const INLINE_MAX = 2048;
export const MAX_NAME_BYTES = 200;

export const VolumeFlags = {
  READ_ONLY: 1,
  SNAPSHOT: 2,
  INLINE: 4,
  /** Served only to TLS clients (format version 2). */
  REQUIRE_TLS: 8,
} as const;

/** The flags VOL_SET_FLAGS may change on an existing volume. */
export const SETTABLE_VOLUME_FLAGS = VolumeFlags.REQUIRE_TLS;

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

export function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Blocks of an image kept back for metadata checkpoints (data allocations never use them). */
export function metadataReserve(dataBlocks: number): number {
  return Math.min(Math.floor(dataBlocks / 2), Math.max(16, Math.floor(dataBlocks / 65)));
}

/** Data blocks an image needs so that `userBlocks` remain after the metadata reserve. */
export function dataBlocksFor(userBlocks: number): number {
  return userBlocks + Math.max(16, Math.ceil(userBlocks / 64));
}
