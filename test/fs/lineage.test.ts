// Volume origins: VOL_SNAPSHOT's apply records which volume a snapshot or clone came from, the
// origin survives journal replay and checkpoints (checkpoint version 2), the first snapshot moves
// the image to format version 3, and an image without snapshots keeps version-1 checkpoints.
import { describe, expect, it } from 'vitest';
import { decodeCheckpoint, encodeCheckpoint } from '../../src/fs/checkpoint-codec.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';

const B = 4096;

async function fresh(): Promise<{ store: ImageStore; storage: MemoryStorage }> {
  const storage = new MemoryStorage(Buffer.alloc(2 << 20, 0xee));
  const store = await ImageStore.create(storage, { dataBytes: 1 << 20, journalBytes: 64 << 10 });
  await store.createVolume('vol', 16 * B);
  return { store, storage };
}

const reopen = (storage: MemoryStorage): Promise<ImageStore> => ImageStore.open(new MemoryStorage(storage.snapshot()));
const names = (store: ImageStore, name: string): string[] => store.volumes.lineage(name).map((f) => f.name);

describe('volume origins', () => {
  it('snapshots and clones record their source; lineage walks the chain', async () => {
    const { store } = await fresh();
    // New images are version 3 (tree nodes, origins recorded) from the start.
    expect(store.superblock.version).toBe(3);
    await store.snapshot('vol', 's1');
    expect(store.superblock.version).toBe(3);
    await store.clone('s1', 'c');
    await store.snapshot('c', 'cs');
    const id = (n: string): number => store.volumes.facts(n).id;
    expect(store.volumes.facts('vol').origin).toBe(0);
    expect(store.volumes.facts('s1').origin).toBe(id('vol'));
    expect(store.volumes.facts('c').origin).toBe(id('s1'));
    expect(names(store, 'cs')).toEqual(['cs', 'c', 's1', 'vol']);
    expect(store.volumes.allFacts().map((f) => f.name)).toEqual(['vol', 's1', 'c', 'cs']);
    // A deleted origin ends the chain; its id is never reused.
    await store.deleteVolume('s1');
    expect(names(store, 'cs')).toEqual(['cs', 'c']);
    expect(store.volumes.facts('c').origin).not.toBe(0);
  });

  it('origins come back from the journal and from a checkpoint', async () => {
    const { store, storage } = await fresh();
    await store.snapshot('vol', 's1');
    await store.clone('s1', 'c');
    const replayed = await reopen(storage);
    expect(names(replayed, 'c')).toEqual(['c', 's1', 'vol']);
    expect(replayed.superblock.version).toBe(3);
    await store.checkpoint();
    const checkpointed = await reopen(storage);
    expect(checkpointed.replay?.transactions ?? 0).toBe(0);
    expect(names(checkpointed, 'c')).toEqual(['c', 's1', 'vol']);
  });

  it('whole checkpoints (old images, the object-store image) stay version 1 until some volume has an origin', async () => {
    const { store } = await fresh();
    const v1 = encodeCheckpoint(store.meta, 7, []);
    expect(v1.readUInt32LE(8)).toBe(1);
    await store.snapshot('vol', 's1');
    const v2 = encodeCheckpoint(store.meta, 7, []);
    expect(v2.readUInt32LE(8)).toBe(2);
    const back = decodeCheckpoint(v2, { blockSize: B, dataBlocks: store.meta.dataBlocks, generation: 7 });
    expect(back.byName.get('s1')!.origin).toBe(store.volumes.facts('vol').id);
    const old = decodeCheckpoint(v1, { blockSize: B, dataBlocks: store.meta.dataBlocks, generation: 7 });
    expect(old.byName.get('vol')!.origin).toBe(0);
  });
});
