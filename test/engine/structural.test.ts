// Structural operations against a busy volume (semantics K2): snapshot, clone, resize and delete
// drain the volume first, so a snapshot holds exactly the writes issued before it (all of them,
// whole) and none issued after it, with writes slowed down so that many are in flight at once.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { seededRandom } from '../support/seeded-random.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { PassThroughStorage } from '../support/pass-through-storage.ts';
import { B, fill, noFua, fua, readAt } from './support.ts';

/** Delays every data write by 0-3 ms, so writes overlap and finish out of order. */
class SlowStorage extends PassThroughStorage {
  private readonly random = seededRandom(11);
  override async write(buf: Buffer, offset: number): Promise<void> {
    await new Promise((r) => setTimeout(r, Math.floor(this.random() * 4)));
    return super.write(buf, offset);
  }
}

const BLOCKS = 32;

async function busyEngine(): Promise<Engine> {
  const store = await ImageStore.create(new SlowStorage(new MemoryStorage(Buffer.alloc(1 << 20, 0xee))), { dataBytes: 2 << 20, journalBytes: 256 << 10 });
  await store.createVolume('v', BLOCKS * B);
  const engine = new Engine(store);
  stores.set(engine, store);
  return engine;
}

/** The store under a busy engine (the test owns it; the engine only gets its parts). */
const stores = new WeakMap<Engine, ImageStore>();
const storeOf = (engine: Engine): ImageStore => stores.get(engine)!;

/** Block i gets `base + i`, whole or as a sub-block write (odd i) over a block of that byte. */
function writeAll(engine: Engine, base: number, done: Set<number>): Promise<void>[] {
  const dev = engine.device('v');
  return Array.from({ length: BLOCKS }, (_, i) => {
    const data = i % 2 === 1 ? fill(512, base + i) : fill(B, base + i);
    const at = i % 2 === 1 ? i * B + 1024 : i * B;
    return dev.write(data, at, i % 3 === 0 ? fua : noFua).then(() => void done.add(i));
  });
}

function expectBlocks(got: Buffer, base: number | null): void {
  for (let i = 0; i < BLOCKS; i++) {
    const block = got.subarray(i * B, (i + 1) * B);
    if (base === null) {
      expect(block.equals(Buffer.alloc(B)), `block ${i} untouched`).toBe(true);
    } else if (i % 2 === 1) {
      expect(block.subarray(1024, 1536).equals(fill(512, base + i)), `block ${i} sub-block`).toBe(true);
    } else {
      expect(block.equals(fill(B, base + i)), `block ${i}`).toBe(true);
    }
  }
}

describe('structural operations drain the volume (K2)', () => {
  it('a snapshot holds every write issued before it and none issued after, each whole', async () => {
    const engine = await busyEngine();
    const early = new Set<number>();
    const late = new Set<number>();
    const first = writeAll(engine, 0x10, early);
    const snap = engine.snapshot('v', 's').then((info) => {
      // Later writes waited at the gate: none of them has even reached the storage yet.
      expect(late.size).toBe(0);
      return info;
    });
    const second = writeAll(engine, 0x60, late);
    await Promise.all([...first, snap, ...second]);
    expectBlocks(await readAt(engine.device('s'), 0, BLOCKS * B), 0x10);
    const now = await readAt(engine.device('v'), 0, BLOCKS * B);
    expectBlocks(now, 0x60);
    // Sub-block writes over the snapshot's blocks kept the rest of each block (copy-up).
    for (let i = 1; i < BLOCKS; i += 2) expect(now.subarray(i * B, i * B + 1024).equals(Buffer.alloc(1024)), `block ${i} head`).toBe(true);
    expect(storeOf(engine).verify().errors).toEqual([]);
  });

  it('a clone made while writes stream in holds the snapshot, and later writes reach only the volume', async () => {
    const engine = await busyEngine();
    const done = new Set<number>();
    await Promise.all(writeAll(engine, 0x20, done));
    await engine.snapshot('v', 's');
    const later = writeAll(engine, 0x70, new Set());
    const clone = engine.clone('s', 'c');
    await Promise.all([...later, clone]);
    expectBlocks(await readAt(engine.device('c'), 0, BLOCKS * B), 0x20);
    expectBlocks(await readAt(engine.device('v'), 0, BLOCKS * B), 0x70);
  });

  it('resize and delete wait for in-flight writes; a resized volume gets a new device', async () => {
    const engine = await busyEngine();
    const done = new Set<number>();
    const writes = writeAll(engine, 0x30, done);
    const old = engine.device('v');
    const info = await engine.resizeVolume('v', 2 * BLOCKS * B);
    await Promise.all(writes);
    expect(info.size).toBe(2 * BLOCKS * B);
    const dev = engine.device('v');
    expect(dev).not.toBe(old);
    expect(dev.size).toBe(2 * BLOCKS * B);
    expectBlocks(await readAt(dev, 0, BLOCKS * B), 0x30);

    const more = writeAll(engine, 0x40, new Set());
    await engine.deleteVolume('v');
    await Promise.allSettled(more);
    expect(storeOf(engine).listVolumes()).toEqual([]);
    expect(storeOf(engine).verify().errors).toEqual([]);
    // The store stays open for the engine's owner, with no device left.
    await storeOf(engine).createVolume('w', B * 4);
    await storeOf(engine).close();
  });
});
