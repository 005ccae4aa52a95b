// What begin() hands to the engine: one piece of a volume, iomap style.
export const Intent = {
  READ: 'read',
  WRITE: 'write',
  ZERO: 'zero',
  TRIM: 'trim',
} as const;
export type Intent = (typeof Intent)[keyof typeof Intent];

export const MappingType = {
  HOLE: 'hole',
  UNWRITTEN: 'unwritten',
  MAPPED: 'mapped',
  INLINE: 'inline',
} as const;
export type MappingType = (typeof MappingType)[keyof typeof MappingType];

/** Bit flags on a mapping. */
export const MappingFlags = {
  /** The physical blocks are also referenced by a snapshot or clone (refcount > 1). */
  SHARED: 1,
  /** Just allocated, contents undefined. The store never hands this out (it allocates UNWRITTEN). */
  NEW: 2,
  /** end() will change metadata: not eligible for the FUA shortcut. */
  DIRTY: 4,
} as const;

export interface Mapping {
  readonly volume: string;
  readonly intent: Intent;
  /** Logical byte offset of the piece; a multiple of the block size (0 for inline). */
  readonly offset: number;
  /** Bytes; a multiple of the block size, except for inline where it is the volume size. */
  readonly length: number;
  readonly type: MappingType;
  /** Byte offset in the data area where the current contents live; -1 for hole and inline. */
  readonly physical: number;
  readonly flags: number;
  /**
   * For a WRITE to a SHARED piece: the private, newly allocated byte offset in the data area where
   * the whole blocks must be written (copy-up from `physical` for bytes the write does not cover).
   * -1 otherwise.
   */
  readonly cowPhysical: number;
  /** For INLINE: a copy of the volume's data, zero-filled to `length`. */
  readonly inline: Buffer | null;
}

/** A piece of a volume's map as listed by `map`/block status (not pinned, nothing reserved). */
export interface ExtentInfo {
  offset: number;
  length: number;
  type: MappingType;
  physical: number;
  shared: boolean;
}
