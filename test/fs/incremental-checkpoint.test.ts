// Version-3 checkpoints write only the tree nodes changed since the last one (plus a small root
// record), free the replaced nodes' blocks once the new checkpoint is current, and reopen to the
// same trees, sharing kept. check catches a node block that is also free and a node block that
// nobody references (leaked); open refuses a dangling node address on disk.
import { describe, expect, it } from 'vitest';
import { checkImageStore } from '../../src/fs/image-file.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { SUPERBLOCK_COPIES, SUPERBLOCK_SLOT } from '../../src/fs/format.ts';
import { GatedStorage } from '../support/gated-storage.ts';

const B = 4096;
const EXTENTS = 5000;

/** Memory storage that counts the bytes written to it. */
class CountingStorage extends MemoryStorage {
  written = 0;
  override async write(buf: Buffer, offset: number): Promise<void> {
    this.written += buf.length;
    return super.write(buf, offset);
  }
}

/** One volume with EXTENTS separate one-block extents (metadata only: no data is written). */
async function big(): Promise<{ store: ImageStore; storage: CountingStorage }> {
  const storage = new CountingStorage(Buffer.alloc(0));
  const store = await ImageStore.create(storage, { dataBytes: (EXTENTS + 2048) * B, journalBytes: 256 << 10 });
  await store.createVolume('v', 2 * EXTENTS * B);
  for (let i = 0; i < EXTENTS; i++) {
    const m = await store.begin('v', 2 * i * B, B, 'write');
    await store.end(m, B);
    if (i % 1000 === 999) await store.commit();
  }
  await store.checkpoint();
  return { store, storage };
}

describe('incremental checkpoints (format version 3)', () => {
  it('a checkpoint after one write writes one path of nodes, not the map', async () => {
    const { store, storage } = await big();
    const nodeBlocks = store.meta.nodeBlocks;
    expect(nodeBlocks).toBeGreaterThan(EXTENTS / 120);
    // A hole between two extents: the write adds an extent to one leaf.
    const m = await store.begin('v', (2 * 2500 + 1) * B, B, 'write');
    await store.end(m, B);
    await store.commit();
    storage.written = 0;
    await store.checkpoint();
    // The root and the full leaf, which splits in two (the tree is two levels at 5000 extents),
    // two root-record blocks (room for the free list to grow) and the two superblock copies; the
    // whole map is over 40 node blocks.
    expect(storage.written).toBe((3 + 2) * B + 2 * 4096);
    expect(store.meta.nodeBlocks).toBe(nodeBlocks + 1); // the new leaf; replaced blocks are free
    expect(store.verify().errors).toEqual([]);
    await store.close();
  });

  it('reopens to the same trees, with snapshots still sharing nodes', async () => {
    const { store, storage } = await big();
    await store.snapshot('v', 's');
    const m = await store.begin('v', 0, B, 'write');
    await store.end(m, B);
    await store.close();
    const back = await ImageStore.open(new MemoryStorage(storage.snapshot()));
    const v = back.meta.byName.get('v')!;
    const s = back.meta.byName.get('s')!;
    expect(s.origin).toBe(v.id);
    expect(back.volume('v').extents).toBe(EXTENTS);
    expect(back.volume('s').extents).toBe(EXTENTS);
    expect([...v.map.entries()].slice(1)).toEqual([...s.map.entries()].slice(1));
    // Only the copied path is private: most leaves are one node held by both trees.
    expect(v.map.tree.root).not.toBe(s.map.tree.root);
    expect(back.lookup('v', 2 * 4000 * B)).toMatchObject({ shared: true });
    expect(back.lookup('v', 0)).toMatchObject({ shared: false });
    expect((await checkImageStore(back, false)).errors).toEqual([]);
    await back.close();
  });

  it('check catches a node block that is also free, and a node block nobody references', async () => {
    const { store } = await big();
    const root = store.meta.byName.get('v')!.map.tree.root;
    const addr = root.addr;
    const freeBlock = store.meta.free.entries().next().value!.start;
    root.addr = freeBlock;
    expect(store.verify().errors.join('\n')).toMatch(/both free and in use/);
    root.addr = -1;
    expect(store.verify().errors.join('\n')).toMatch(/1 blocks are neither free nor referenced \(leaked\)/);
    root.addr = addr;
    expect(store.verify().errors).toEqual([]);
    await store.abandon();
  });

  it('a dangling node address on disk makes open fail with CORRUPT (check reports such an image unreadable)', async () => {
    const { store, storage } = await big();
    await store.close();
    const image = storage.snapshot();
    const probe = await ImageStore.open(new MemoryStorage(Buffer.from(image)), { readOnly: true });
    const root = probe.meta.byName.get('v')!.map.tree.root;
    const leafAddr = (root as unknown as { children: Array<{ addr: number }> }).children[3]!.addr;
    const dataOffset = probe.superblock.dataOffset;
    await probe.close();
    // Zero one leaf block: the parent's address now points at no node.
    image.fill(0, dataOffset + leafAddr * B, dataOffset + (leafAddr + 1) * B);
    await expect(ImageStore.open(new MemoryStorage(Buffer.from(image)))).rejects.toMatchObject({ code: 'CORRUPT', message: expect.stringMatching(/tree node at block \d+: bad magic/) });
  });

  it('a check while a checkpoint is being written counts what it holds as in use, not leaked', async () => {
    // Served images are checked while clients write (control/live-check.ts), so a check can land
    // between a checkpoint's prepare and the flip of the superblocks: the new root record is
    // taken from the free runs, and the replaced nodes are no longer in meta.retiredNodes.
    const storage = new GatedStorage(new MemoryStorage(Buffer.alloc(0)));
    const store = await ImageStore.create(storage, { dataBytes: 4096 * B, journalBytes: 256 << 10 });
    await store.createVolume('v', 1024 * B);
    for (let i = 0; i < 300; i++) {
      const m = await store.begin('v', 2 * i * B, B, 'write');
      await store.end(m, B);
    }
    await store.checkpoint();
    const m = await store.begin('v', B, B, 'write'); // changes a leaf: its old block is replaced
    await store.end(m, B);
    await store.commit();
    const flip = storage.holdRange('write', 0, SUPERBLOCK_COPIES * SUPERBLOCK_SLOT);
    const writing = store.checkpoint();
    while (flip.held === 0) await new Promise((r) => setImmediate(r));
    const during = store.verify();
    expect(during.errors).toEqual([]);
    // The new root record's blocks and the replaced leaf's.
    const held = store.transientRuns().reduce((n, r) => n + r.len, 0);
    expect(held).toBeGreaterThanOrEqual(2);
    flip.release();
    await writing;
    expect(store.transientRuns()).toEqual([]);
    const after = store.verify();
    expect(after.errors).toEqual([]);
    // Every block is accounted for at both instants: what was held is now used or free.
    expect(after.usedBlocks + after.freeBlocks).toBe(during.usedBlocks + during.freeBlocks + held);
    await store.close();
  });
});
