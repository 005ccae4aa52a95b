// WRITE_ZEROES with NO_HOLE turns an exclusive written block UNWRITTEN in place (metadata only,
// semantics T3), as the kernel's zero-range does. Until that is committed the committed map still
// points at the block, so a later sub-block write there lands in place padded with zeros. After a
// power loss before the next commit a sector may therefore read its committed value, the write's
// bytes, or the zeros of the unflushed zero op: all three are what NBD allows for unflushed
// requests. crash.test.ts counts zero and trim ops as writes of 0 for this reason (found with
// IOMAPD_FS_SEED=1 IOMAPD_FS_CASES=1500, before the model did).
//
// "Power loss" here: the store is abandoned without a commit and reopened from storage where every
// data write landed (MemoryStorage is durable at once), the case that shows the zeros.
import { describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { punch, readBytes, writeBytes } from './support/mini-engine.ts';

const B = 4096;

function sectors(buf: Buffer): number[] {
  const out: number[] = [];
  for (let s = 0; s < buf.length; s += 512) out.push(buf[s]!);
  return out;
}

describe('zero with noHole, then a write, then power loss before a commit', () => {
  it('shows per sector only the committed data, the write, or the zero op, and checks clean', async () => {
    const storage = new MemoryStorage(Buffer.alloc(2 << 20, 0xee));
    const store = await ImageStore.create(storage, { dataBytes: 1 << 20, journalBytes: 64 << 10 });
    await store.createVolume('v', 4 * B);
    await writeBytes(store, 'v', 0, Buffer.alloc(2 * B, 2));
    await store.commit();
    await punch(store, 'v', 0, B, 'zero', true); // block 0, not durable yet
    await writeBytes(store, 'v', 0, Buffer.alloc(512, 4)); // sector 0 of block 0
    expect(sectors(await readBytes(store, 'v', 0, 2 * B))).toEqual([4, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2]);
    await store.abandon();

    const reopened = await ImageStore.open(new MemoryStorage(storage.snapshot()));
    expect(reopened.verify().errors).toEqual([]);
    const got = sectors(await readBytes(reopened, 'v', 0, 2 * B));
    expect([2, 4]).toContain(got[0]);
    for (const s of got.slice(1, 8)) expect([0, 2]).toContain(s);
    // Block 1 was never touched after the commit.
    expect(got.slice(8)).toEqual([2, 2, 2, 2, 2, 2, 2, 2]);
    await reopened.close();
  });
});
