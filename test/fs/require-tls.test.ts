// The REQUIRE_TLS volume flag: set at create or later, kept by snapshots and clones, durable
// through journal replay and checkpoints. Version 2 introduced the flag: a release that does not
// know it refuses the image instead of serving the volume plainly. New images are at version 3
// (tree nodes), which includes the flag; an older image is raised before the flag is first logged
// (legacy-image.test.ts).
import { describe, expect, it } from 'vitest';
import { FORMAT_VERSION, REQUIRE_TLS_FORMAT_VERSION } from '../../src/fs/format.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';

const B = 4096;

async function fresh(): Promise<{ store: ImageStore; storage: MemoryStorage }> {
  const storage = new MemoryStorage(Buffer.alloc(2 << 20, 0xee));
  const store = await ImageStore.create(storage, { dataBytes: 1 << 20, journalBytes: 64 << 10 });
  await store.createVolume('plain', 16 * B);
  return { store, storage };
}

/** Reopens the bytes as they are now (what a crash right here would leave). */
async function reopen(storage: MemoryStorage): Promise<ImageStore> {
  return ImageStore.open(new MemoryStorage(storage.snapshot()));
}

describe('require-tls volume flag', () => {
  it('a new image is at the current version, which knows the flag', async () => {
    const { store, storage } = await fresh();
    expect(FORMAT_VERSION).toBeGreaterThanOrEqual(REQUIRE_TLS_FORMAT_VERSION);
    expect(store.superblock.version).toBe(FORMAT_VERSION);
    expect(store.volumes.facts('plain').requireTls).toBe(false);
    await store.durability.checkpoint();
    expect((await reopen(storage)).superblock.version).toBe(FORMAT_VERSION);
  });

  it('create --require-tls survives replay and checkpoints', async () => {
    const { store, storage } = await fresh();
    await store.createVolume('secret', 16 * B, { requireTls: true });
    expect(store.volumes.facts('secret').requireTls).toBe(true);
    expect(store.superblock.version).toBe(FORMAT_VERSION);
    const replayed = await reopen(storage); // the flag comes back from the journal
    expect(replayed.superblock.version).toBe(FORMAT_VERSION);
    expect(replayed.volumes.facts('secret').requireTls).toBe(true);
    expect(replayed.volumes.facts('plain').requireTls).toBe(false);
    await store.durability.checkpoint();
    const checkpointed = await reopen(storage); // and from the checkpoint
    expect(checkpointed.volumes.facts('secret').requireTls).toBe(true);
  });

  it('set on and off is durable on return; snapshots and clones keep the source flag', async () => {
    const { store, storage } = await fresh();
    expect((await store.volumes.setRequireTls('plain', true)).requireTls).toBe(true);
    expect(store.superblock.version).toBe(FORMAT_VERSION);
    await store.snapshot('plain', 'snap');
    await store.clone('snap', 'copy');
    let back = await reopen(storage);
    for (const n of ['plain', 'snap', 'copy']) expect(back.volumes.facts(n).requireTls).toBe(true);
    expect(back.volumes.facts('snap')).toMatchObject({ snapshot: true, readOnly: true });
    await store.volumes.setRequireTls('plain', false);
    back = await reopen(storage);
    expect(back.volumes.facts('plain').requireTls).toBe(false);
    expect(back.volumes.facts('snap').requireTls).toBe(true);
    expect(back.superblock.version).toBe(FORMAT_VERSION); // never lowered
  });

  it('refuses an unknown volume and a read-only image, changing nothing', async () => {
    const { store, storage } = await fresh();
    const generation = store.superblock.generation;
    await expect(store.volumes.setRequireTls('nope', true)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(store.superblock.generation).toBe(generation);
    await store.close();
    const ro = await ImageStore.open(new MemoryStorage(storage.snapshot()), { readOnly: true });
    await expect(ro.volumes.setRequireTls('plain', true)).rejects.toMatchObject({ code: 'READ_ONLY' });
  });
});
