// Regression: a data write still in flight when a sync started was counted as synced, so a FLUSH
// after that write completed (and was acknowledged) skipped fdatasync and left it volatile.
// Also: overlapping data syncs are shared (grouped), never at the cost of that rule.
import { describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { Gate } from '../support/test-devices.ts';

const B = 4096;

/** Memory storage whose writes or syncs can be held back, and which counts syncs. */
class GatedStorage extends MemoryStorage {
  syncs = 0;
  private readonly gates: { write: Gate | null; sync: Gate | null } = { write: null, sync: null };

  hold(op: 'write' | 'sync'): void {
    this.gates[op] = new Gate();
  }

  release(op: 'write' | 'sync'): void {
    this.gates[op]?.open();
    this.gates[op] = null;
  }

  override async write(buf: Buffer, offset: number): Promise<void> {
    await this.gates.write?.wait;
    await super.write(buf, offset);
  }

  override async sync(): Promise<void> {
    this.syncs++;
    await this.gates.sync?.wait;
    await super.sync();
  }
}

/** A store with one volume whose block 0 is MAPPED and durable (later writes there are pure overwrites). */
async function storeWithMappedBlock(): Promise<{ store: ImageStore; storage: GatedStorage; physical: number }> {
  const storage = new GatedStorage(Buffer.alloc(2 << 20));
  const store = await ImageStore.create(storage, { dataBytes: 1 << 20, journalBytes: 64 << 10 });
  await store.createVolume('v', 4 * B);
  const m = await store.begin('v', 0, B, 'write');
  await store.writeData(m.physical, Buffer.alloc(B, 1));
  await store.end(m, B);
  await store.commit();
  return { store, storage, physical: m.physical };
}

const settled = async (p: Promise<unknown>): Promise<boolean> => {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  for (let i = 0; i < 10; i++) await Promise.resolve();
  return done;
};

describe('data syncs cover exactly the writes completed before them', () => {
  it('a commit after a write that completed during an earlier sync syncs again', async () => {
    const storage = new GatedStorage(Buffer.alloc(2 << 20));
    const store = await ImageStore.create(storage, { dataBytes: 1 << 20, journalBytes: 64 << 10 });
    await store.createVolume('v', 4 * B);
    // Make block 0 MAPPED and durable, so the next write is a pure overwrite (no metadata).
    const m = await store.begin('v', 0, B, 'write');
    await store.writeData(m.physical, Buffer.alloc(B, 1));
    await store.end(m, B);
    await store.commit();

    const o = await store.begin('v', 0, B, 'write');
    storage.hold('write');
    const write = store.writeData(o.physical, Buffer.alloc(B, 2)); // issued, not yet landed
    await store.commit(); // a FLUSH from another request, while the write is in flight
    storage.release('write');
    await write;
    await store.end(o, B);
    // The write is now acknowledged: a FLUSH after it must reach the storage's sync.
    const before = storage.syncs;
    await store.commit();
    expect(storage.syncs).toBeGreaterThan(before);
    await store.close();
  });

  it('overlapping syncs that the running one covers share it', async () => {
    const { store, storage, physical } = await storeWithMappedBlock();
    await store.writeData(physical, Buffer.alloc(B, 3));
    const before = storage.syncs;
    storage.hold('sync');
    const flushes = Array.from({ length: 5 }, () => store.syncData());
    expect(storage.syncs - before).toBe(1);
    storage.release('sync');
    await Promise.all(flushes);
    expect(storage.syncs - before).toBe(1);
    await store.close();
  });

  it('a caller whose write completed after the running sync started waits for the next, shared one', async () => {
    const { store, storage, physical } = await storeWithMappedBlock();
    await store.writeData(physical, Buffer.alloc(B, 4));
    const before = storage.syncs;
    storage.hold('sync');
    const first = store.syncData(); // covers the write above, not the next one
    await store.writeData(physical, Buffer.alloc(B, 5)); // completes while the sync runs
    const later = [store.syncData(), store.syncData(), store.syncData()];
    expect(storage.syncs - before).toBe(1);
    storage.release('sync'); // the first sync completes ...
    storage.hold('sync'); // ... and the next one waits
    await first;
    // The later callers are not answered by the first sync: a second one runs for all of them.
    for (let i = 0; i < 10 && storage.syncs - before < 2; i++) await Promise.resolve();
    expect(storage.syncs - before).toBe(2);
    expect(await settled(Promise.all(later))).toBe(false);
    storage.release('sync');
    await Promise.all(later);
    expect(storage.syncs - before).toBe(2);
    await store.close();
  });
});
