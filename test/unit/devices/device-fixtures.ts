// Shared helpers for the device tests: temporary directories and recognisable byte patterns.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** A fresh directory under the system temp dir, and a function that removes it. */
export async function makeTempDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-devices-'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Bytes that differ with position and seed and are never zero, so misplaced data shows. */
export function pattern(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = ((i * 31 + seed * 7) % 251) + 1;
  return out;
}

export function isAllZero(buffer: Buffer): boolean {
  for (const byte of buffer) if (byte !== 0) return false;
  return true;
}
