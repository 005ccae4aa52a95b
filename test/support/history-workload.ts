// Random histories for the incremental-backup tests: a volume written, trimmed and zeroed, with
// snapshots s1 and s2 between phases, and sometimes a clone of s1 (itself written and snapshotted).
// Runs on an ImageStore through the fs tests' mini engine, so the same workloads serve the unit
// property test and the interop tests (which build the image in-process, then serve it).
import type { ImageStore } from '../../src/fs/image-store.ts';
import { punch, writeBytes } from '../fs/support/mini-engine.ts';
import { seededRandom } from './seeded-random.ts';

export interface History {
  readonly volume: string;
  readonly s1: string;
  readonly s2: string;
  /** A clone of s1 and a snapshot of it, when the workload made them. */
  readonly clone: string | null;
  readonly cloneSnap: string | null;
}

export interface WorkloadOptions {
  /** Volume size in allocation blocks. */
  readonly blocks: number;
  /** Operations per phase. */
  readonly ops: number;
  /** Also write 512-byte-aligned pieces of blocks (soundness only: precision is per block). */
  readonly partial: boolean;
}

export async function runHistory(store: ImageStore, prefix: string, seed: number, o: WorkloadOptions): Promise<History> {
  const random = seededRandom(seed);
  const int = (n: number): number => Math.floor(random() * n);
  const B = store.blockSize;
  const phase = async (vol: string): Promise<void> => {
    for (let i = 0; i < o.ops; i++) {
      const r = random();
      const start = int(o.blocks);
      const len = 1 + int(Math.min(8, o.blocks - start));
      if (r < 0.55) {
        const data = Buffer.alloc(len * B);
        for (let j = 0; j < data.length; j += 4) data.writeUInt32LE((random() * 0x1_0000_0000) >>> 0, j);
        if (o.partial && random() < 0.3) {
          const skip = 512 * int(B / 512);
          const n = 512 * (1 + int((data.length - skip) / 512));
          await writeBytes(store, vol, start * B + skip, data.subarray(0, n));
        } else await writeBytes(store, vol, start * B, data);
      } else if (r < 0.75) await punch(store, vol, start * B, len * B, 'trim');
      else await punch(store, vol, start * B, len * B, 'zero', random() < 0.5);
    }
  };
  const volume = `${prefix}`;
  await store.createVolume(volume, o.blocks * B);
  await phase(volume);
  const s1 = `${prefix}-s1`;
  await store.snapshot(volume, s1);
  await phase(volume);
  let clone: string | null = null;
  let cloneSnap: string | null = null;
  if (random() < 0.5) {
    clone = `${prefix}-c`;
    await store.clone(s1, clone);
    await phase(clone);
    cloneSnap = `${prefix}-cs`;
    await store.snapshot(clone, cloneSnap);
    await phase(clone);
  }
  const s2 = `${prefix}-s2`;
  await store.snapshot(volume, s2);
  await phase(volume);
  return { volume, s1, s2, clone, cloneSnap };
}
