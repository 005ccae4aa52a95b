// ImageStore.readNow, the synchronous read fast path (src/fs/image-store.ts): it reads only a
// range inside one MAPPED extent of a storage that can read now, and otherwise does nothing and
// says so, leaving the caller to begin/readData/end.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/fs/image-store.ts';
import { FileStorage } from '../../src/storage/file-storage.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import type { InlineIoGate } from '../../src/util/inline-io.ts';
import { punch, writeBytes } from './support/mini-engine.ts';

const B = 4096;

describe('ImageStore.readNow', () => {
  let dir: string;
  let store: ImageStore;
  /** The image file's own read gate (each file storage owns its gates). */
  let inlineReads: InlineIoGate;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'iomapd-readnow-'));
    const file = await FileStorage.open(join(dir, 'img'), { create: true });
    inlineReads = file.gates.reads;
    store = await ImageStore.create(file, { dataBytes: 4 << 20, journalBytes: 64 << 10 });
    await store.createVolume('v', 64 * B);
    await store.createVolume('pre', 8 * B, { preallocate: true });
    await store.createVolume('tiny', 1024); // inline
    const data = Buffer.alloc(4 * B);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
    await writeBytes(store, 'v', 8 * B, data); // blocks 8-11 mapped
    await writeBytes(store, 'v', 20 * B, Buffer.alloc(B, 0x77)); // block 20 mapped, apart
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a range inside one mapped extent, at any 512-byte offset', () => {
    inlineReads.mode = 'always';
    const into = Buffer.alloc(2 * B + 512);
    expect(store.readNow('v', 8 * B + 1536, into)).toBe(true);
    for (let i = 0; i < into.length; i++) expect(into[i]).toBe(((i + 1536) * 13) & 0xff);
  });

  it.each([
    ['a hole', 'v', 0, B],
    ['a range running from mapped into a hole', 'v', 11 * B, 2 * B],
    ['two mapped extents with a hole between', 'v', 11 * B, 10 * B],
    ['unwritten (preallocated) space', 'pre', 0, B],
    ['an inline volume', 'tiny', 0, 512],
    ['a range past the end', 'v', 63 * B, 2 * B],
    ['an unknown volume', 'nope', 0, B],
  ])('declines %s and leaves the buffer alone', (_name, volume, offset, length) => {
    inlineReads.mode = 'always';
    const into = Buffer.alloc(length, 0xaa);
    expect(store.readNow(volume, offset, into)).toBe(false);
    expect(into.every((b) => b === 0xaa)).toBe(true);
  });

  it('declines when the inline read gate sends reads to the pool', () => {
    inlineReads.mode = 'never';
    expect(store.readNow('v', 8 * B, Buffer.alloc(B))).toBe(false);
  });

  it('follows the map at once: after a TRIM it declines, after a rewrite it reads the new data', async () => {
    inlineReads.mode = 'always';
    await punch(store, 'v', 20 * B, B, 'trim');
    expect(store.readNow('v', 20 * B, Buffer.alloc(B))).toBe(false);
    await writeBytes(store, 'v', 20 * B, Buffer.alloc(B, 0x42));
    const into = Buffer.alloc(B);
    expect(store.readNow('v', 20 * B, into)).toBe(true);
    expect(into.every((b) => b === 0x42)).toBe(true);
  });
});

it('a storage without readNow (memory) always declines', async () => {
  const store = await ImageStore.create(new MemoryStorage(Buffer.alloc(2 << 20)), { dataBytes: 1 << 20, journalBytes: 64 << 10 });
  await store.createVolume('v', 4 * B);
  await writeBytes(store, 'v', 0, Buffer.alloc(B, 1));
  expect(store.readNow('v', 0, Buffer.alloc(B))).toBe(false);
  await store.close();
});
