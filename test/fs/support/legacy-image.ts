// Turns a cleanly closed image into the same image in format version 1 or 2 (whole extent lists
// in one checkpoint, no tree nodes), as an older release would have left it: the version-1
// checkpoint goes into free blocks, the node blocks and the version-3 root record become free, and
// both superblock copies point at it. For tests of reading and upgrading old images.
import { MemoryStorage } from '../../../src/storage/memory-storage.ts';
import { treeCensus } from '../../../src/fs/check.ts';
import { checkpointSize, encodeCheckpoint } from '../../../src/fs/checkpoint-codec.ts';
import { committedFree } from '../../../src/fs/committed-free.ts';
import type { Run } from '../../../src/fs/extent.ts';
import { ImageStore } from '../../../src/fs/image-store.ts';
import { FileSuperblocks } from '../../../src/fs/superblock-io.ts';
import { checksum } from '../../../src/util/checksum.ts';

/** The bytes of a cleanly closed image, rewritten as format `version`. */
export async function downgradeImage(image: Buffer, version: 1 | 2): Promise<Buffer> {
  const storage = new MemoryStorage(Buffer.from(image));
  const store = await ImageStore.open(storage, { readOnly: true });
  const sb = store.superblock;
  if (store.uncommitted !== 0 || (store.replay?.ops ?? 0) !== 0) throw new Error('downgradeImage needs a cleanly closed image');
  const meta = store.meta;
  const B = sb.blockSize;
  const nodes: Run[] = [];
  for (const n of treeCensus(meta).keys()) if (n.addr >= 0) nodes.push({ start: n.addr, len: 1 });
  const extra = [...sb.checkpointRuns, ...nodes];
  const blocks = Math.ceil(checkpointSize(meta, extra.length + 2) / B) + 1;
  let first: { start: number; v: { len: number } } | undefined;
  for (const f of meta.free.entries()) if (!first && f.v.len >= blocks) first = f;
  if (!first || first.v.len < blocks) throw new Error('no room for a version-1 checkpoint');
  meta.takeFree(first.start, blocks);
  const generation = sb.generation + 1;
  const blob = encodeCheckpoint(meta, generation, committedFree(meta.free, extra));
  const padded = Buffer.alloc(blocks * B);
  blob.copy(padded);
  await storage.write(padded, sb.dataOffset + first.start * B);
  await storage.sync();
  await new FileSuperblocks(storage, { ...sb }).write({
    ...sb,
    version,
    generation,
    checkpointBytes: blob.length,
    checkpointCrc: checksum(blob),
    checkpointRuns: [{ start: first.start, len: blocks }],
  });
  const out = storage.snapshot();
  await store.close();
  return out;
}
