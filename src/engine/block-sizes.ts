// The block sizes iomapd advertises unless a backend needs others. The minimum is 512 because the
// kernel's nbd client assumes 512 unless told otherwise; the preferred size is the 4 KiB
// allocation block; the maximum bounds one WRITE payload or simple READ (the buffer we allocate).
import type { BlockSizes } from './block-device.ts';

export const DEFAULT_BLOCK_SIZES: BlockSizes = Object.freeze({
  minimum: 512,
  preferred: 4096,
  maximum: 32 * 1024 * 1024,
});

/**
 * The minimums `serve --min-block-size` offers. 1 serves byte-granular clients (libnbd programs
 * that pick any offset, as nbdkit and qemu-nbd allow): every device here already handles any
 * byte range, the image engine by read-modify-write of the partly covered blocks under its
 * block-rounded range lock, and O_DIRECT storage by read-modify-write of the sectors. 4096 makes
 * validation refuse (EINVAL) what is not 4 KiB aligned.
 */
export const MIN_BLOCK_SIZES = [1, 512, 4096] as const;
export type MinBlockSize = (typeof MIN_BLOCK_SIZES)[number];

/** `sizes` with another minimum (the preferred size never drops below it). */
export function withMinimum(sizes: BlockSizes, minimum: MinBlockSize): BlockSizes {
  return Object.freeze({ ...sizes, minimum, preferred: Math.max(sizes.preferred, minimum) });
}
