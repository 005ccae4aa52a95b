// A read-only look at a file's signatures, for `iomapd serve FILE`: is it an iomapd image, a damaged
// one, or no image at all? It opens nothing but the file, reads a few bytes and takes no lock, so it
// is safe on a file another daemon serves. The layout is docs/FORMAT.md; the magics repeat those of
// superblock.ts and journal.ts (test/fs/image-probe.test.ts checks them on real images).
import { open } from 'node:fs/promises';
import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, SUPERBLOCK_COPIES, SUPERBLOCK_SLOT, roundUp } from './format.ts';

/** Superblock magic (superblock.ts), at byte 0 of each copy. */
const SUPERBLOCK_MAGIC = Buffer.from('IOMAPDSB', 'latin1');
/** Journal transaction magic "IMJT" (journal.ts), a u32 at byte 0 of each transaction. */
const JOURNAL_MAGIC = 0x544a4d49;

export type ImageSignature =
  /** Superblock copy 0 starts with the magic: open it as an image (open still verifies everything). */
  | { readonly kind: 'image' }
  /**
   * Copy 0 has no magic, but another signature of the format is there. `superblock` says whether
   * a superblock copy still is (then `iomapd check --repair` can rewrite copy 0 from it).
   */
  | { readonly kind: 'damaged'; readonly evidence: string; readonly superblock: boolean }
  /** No signature of the format: not an iomapd image. */
  | { readonly kind: 'none' };

/**
 * Where the journal ring can start: the first block boundary after the superblocks, for every
 * allowed block size (ImageStore.create). A transaction there (current or from an earlier lap) is
 * written once the image has committed anything.
 */
function journalOffsets(): number[] {
  const out = new Set<number>();
  for (let b = MIN_BLOCK_SIZE; b <= MAX_BLOCK_SIZE; b *= 2) out.add(roundUp(SUPERBLOCK_COPIES * SUPERBLOCK_SLOT, b));
  return [...out];
}

/** Reads the signatures of the file at `path` (which must exist). */
export async function probeImageFile(path: string): Promise<ImageSignature> {
  const fh = await open(path, 'r');
  try {
    const at = async (offset: number, length: number): Promise<Buffer | null> => {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      return bytesRead === length ? buf : null;
    };
    const hasSuperblockMagic = async (copy: number): Promise<boolean> =>
      (await at(copy * SUPERBLOCK_SLOT, SUPERBLOCK_MAGIC.length))?.equals(SUPERBLOCK_MAGIC) ?? false;

    if (await hasSuperblockMagic(0)) return { kind: 'image' };
    for (let copy = 1; copy < SUPERBLOCK_COPIES; copy++) {
      if (await hasSuperblockMagic(copy)) {
        return { kind: 'damaged', superblock: true, evidence: `superblock copy 0 has no iomapd magic, but copy ${copy} (byte ${copy * SUPERBLOCK_SLOT}) has` };
      }
    }
    for (const offset of journalOffsets()) {
      if ((await at(offset, 4))?.readUInt32LE(0) === JOURNAL_MAGIC) {
        return { kind: 'damaged', superblock: false, evidence: `no superblock copy has the iomapd magic, but an iomapd journal transaction starts at byte ${offset}` };
      }
    }
    return { kind: 'none' };
  } finally {
    await fh.close();
  }
}
