// Damaging files on purpose, for tests of what notices the damage.
import { open } from 'node:fs/promises';

/** Overwrites `length` bytes of the file at `offset` with zeros. */
export async function zeroFileRange(path: string, offset: number, length: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(Buffer.alloc(length), 0, length, offset);
  } finally {
    await fh.close();
  }
}
