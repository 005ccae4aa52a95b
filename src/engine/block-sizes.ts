// The block sizes iomapd advertises unless a backend needs others. The minimum is 512 because the
// kernel's nbd client assumes 512 unless told otherwise; the preferred size is the 4 KiB
// allocation block; the maximum bounds one WRITE payload or simple READ (the buffer we allocate).
import type { BlockSizes } from './block-device.ts';

export const DEFAULT_BLOCK_SIZES: BlockSizes = Object.freeze({
  minimum: 512,
  preferred: 4096,
  maximum: 32 * 1024 * 1024,
});
