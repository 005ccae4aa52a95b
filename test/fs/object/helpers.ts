// Shared pieces of the object-image tests: the mini engine over an ObjectImageStore, and small
// images on the fake bucket.
import type { ImageStore } from '../../../src/fs/image-store.ts';
import { type ObjectCreateOptions, type ObjectOpenOptions, ObjectImageStore } from '../../../src/fs/object/object-image-store.ts';
import type { ObjectStore } from '../../../src/storage/object-store.ts';
import { readBytes as readFile, writeBytes as writeFile } from '../support/mini-engine.ts';

/** The mini engine needs begin/end, readData/writeData, writeInline and blockSize: the object image has them all. */
const asEngineStore = (s: ObjectImageStore): ImageStore => s as unknown as ImageStore;

export function writeBytes(s: ObjectImageStore, vol: string, pos: number, data: Buffer): Promise<void> {
  return writeFile(asEngineStore(s), vol, pos, data);
}

export function readBytes(s: ObjectImageStore, vol: string, pos: number, len: number): Promise<Buffer> {
  return readFile(asEngineStore(s), vol, pos, len);
}

/** Small segments and cache so tests cross segment boundaries and the cache bound. */
export const SMALL: ObjectOpenOptions = { segmentBlocks: 8, cacheSize: 64 * 4096, checkpointEvery: 4 };

export function createSmall(store: ObjectStore, extra: Partial<ObjectCreateOptions> = {}): Promise<ObjectImageStore> {
  return ObjectImageStore.create(store, { dataBytes: 8 << 20, ...SMALL, ...extra });
}

export function openSmall(store: ObjectStore, extra: ObjectOpenOptions = {}): Promise<ObjectImageStore> {
  return ObjectImageStore.open(store, { ...SMALL, ...extra });
}

/** A block of bytes that says where it belongs (and which round wrote it). */
export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i += 4) b.writeUInt32LE((seed * 2654435761 + i) >>> 0, i);
  return b;
}

/** Compares bytes (vitest's deep equality is slow on large buffers); names the first difference. */
export function sameBytes(got: Buffer, want: Buffer): string {
  if (got.equals(want)) return 'same';
  const n = Math.min(got.length, want.length);
  let i = 0;
  while (i < n && got[i] === want[i]) i++;
  return `differ at byte ${i} (lengths ${got.length}, ${want.length})`;
}
