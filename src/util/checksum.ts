// Checksums for on-disk structures: CRC-32 (IEEE) from node:zlib, which is native and fast.
import { crc32 } from 'node:zlib';

export function checksum(data: Uint8Array, seed = 0): number {
  return crc32(data, seed) >>> 0;
}
