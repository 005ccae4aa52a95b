// Regression: a data write still in flight when a sync started was counted as synced, so a FLUSH
// after that write completed (and was acknowledged) skipped fdatasync and left it volatile.
import { describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';

const B = 4096;

/** Memory storage whose writes can be held back, and which counts syncs. */
class GatedStorage extends MemoryStorage {
  syncs = 0;
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;

  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  release(): void {
    this.gate = null;
    this.open?.();
  }

  override async write(buf: Buffer, offset: number): Promise<void> {
    const gate = this.gate;
    if (gate) await gate;
    await super.write(buf, offset);
  }

  override async sync(): Promise<void> {
    this.syncs++;
    await super.sync();
  }
}

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
    storage.hold();
    const write = store.writeData(o.physical, Buffer.alloc(B, 2)); // issued, not yet landed
    await store.commit(); // a FLUSH from another request, while the write is in flight
    storage.release();
    await write;
    await store.end(o, B);
    // The write is now acknowledged: a FLUSH after it must reach the storage's sync.
    const before = storage.syncs;
    await store.commit();
    expect(storage.syncs).toBeGreaterThan(before);
    await store.close();
  });
});
