// Superblock copies on the image file: SB_COPIES slots at the start, each a whole record with its
// own generation and checksum (superblock.ts). Written one at a time with a sync after each, so a
// crash leaves at least one valid copy; open picks the valid copy with the highest generation.
import { IomapdError } from '../util/errors.ts';
import type { Storage } from '../storage/storage.ts';
import { SUPERBLOCK_SLOT } from './format.ts';
import type { Superblocks } from './store-contract.ts';
import { type Superblock, decodeSuperblock, encodeSuperblock } from './superblock.ts';

export const SB_COPIES = 2;

export class FileSuperblocks implements Superblocks {
  private readonly storage: Storage;
  private sb: Superblock;

  constructor(storage: Storage, sb: Superblock) {
    this.storage = storage;
    this.sb = sb;
  }

  get current(): Readonly<Superblock> {
    return this.sb;
  }

  async write(sb: Superblock): Promise<void> {
    const buf = encodeSuperblock(sb);
    for (let i = 0; i < SB_COPIES; i++) {
      await this.storage.write(buf, i * SUPERBLOCK_SLOT);
      await this.storage.sync();
    }
    this.sb = sb;
  }
}

function asStoreError(err: unknown): IomapdError {
  return err instanceof IomapdError ? err : new IomapdError('IO', (err as Error)?.message ?? String(err), { cause: err });
}

/** Reads both superblock copies and picks the valid one with the highest generation. */
export async function readSuperblocks(storage: Storage): Promise<{ sb: Superblock; problems: string[] }> {
  const found: Superblock[] = [];
  const errors: IomapdError[] = [];
  const problems: string[] = [];
  for (let i = 0; i < SB_COPIES; i++) {
    const buf = Buffer.alloc(SUPERBLOCK_SLOT);
    await storage.read(buf, i * SUPERBLOCK_SLOT);
    try {
      found.push(decodeSuperblock(buf));
    } catch (err) {
      const e = asStoreError(err);
      errors.push(e);
      problems.push(`superblock copy ${i}: ${e.code}: ${e.message}`);
    }
  }
  if (found.length === 0) {
    const tooNew = errors.find((e) => e.code === 'FORMAT_TOO_NEW');
    if (tooNew) throw tooNew;
    if (errors.every((e) => e.code === 'BAD_MAGIC')) throw errors[0]!;
    throw new IomapdError('CORRUPT', `no valid superblock: ${problems.join('; ')}`);
  }
  found.sort((a, b) => b.generation - a.generation);
  const sb = found[0]!;
  if (found.length === 2 && found[1]!.generation !== sb.generation) {
    problems.push(`superblock copies disagree (generations ${sb.generation} and ${found[1]!.generation})`);
  }
  return { sb, problems };
}
