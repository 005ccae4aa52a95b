// Opening image files: the lock, the file backend and the store, wired together, plus the
// file-level check used by `iomapd check`.
import { unlink } from 'node:fs/promises';
import { IomapdError } from '../util/errors.ts';
import { FileStorage } from '../storage/file-storage.ts';
import { type CacheMode, type OpenedFile, openFileStorage } from '../storage/open-file.ts';
import type { Storage } from '../storage/storage.ts';
import type { InlineIoModes } from '../util/fd-io.ts';
import { type CheckProgress, type CheckReport, rebuildMetadata } from './check.ts';
import { type CreateOptions, ImageStore, type OpenOptions } from './image-store.ts';
import { ImageLock } from './lock.ts';

/** Creates a new image file (it must not exist) and returns the open store. */
export async function createImageFile(path: string, opts: CreateOptions): Promise<ImageStore> {
  const storage = await FileStorage.open(path, { create: true });
  let lock: ImageLock | null = null;
  try {
    lock = await ImageLock.acquire(path);
    const store = await ImageStore.create(storage, opts);
    const held = lock;
    store.onClose = () => held.release();
    return store;
  } catch (err) {
    await storage.close().catch(() => {});
    await lock?.release();
    await unlink(path).catch(() => {});
    throw err;
  }
}

/** Opens an image file, holding its lock until the store is closed. */
export async function openImageFile(path: string, opts: ImageFileOptions = {}): Promise<ImageStore> {
  return (await openImage(path, opts)).store;
}

export interface ImageFileOptions extends OpenOptions {
  /** `none`: O_DIRECT where the filesystem allows it; `writeback` (default): buffered. */
  cache?: CacheMode;
  /** Modes of the image file's inline I/O gates (default auto). */
  inline?: InlineIoModes;
}

/** openImageFile, also saying how the file is accessed (O_DIRECT, or why `none` fell back). */
export async function openImage(path: string, opts: ImageFileOptions = {}): Promise<{ store: ImageStore; io: Omit<OpenedFile, 'storage'> }> {
  const lock = await ImageLock.acquire(path);
  let storage: Storage | null = null;
  try {
    const opened = await openFileStorage(path, { readOnly: opts.readOnly ?? false, cache: opts.cache ?? 'writeback', inline: opts.inline });
    storage = opened.storage;
    const store = await ImageStore.open(storage, opts);
    store.onClose = () => lock.release();
    return { store, io: { direct: opened.direct, fallback: opened.fallback, gates: opened.gates } };
  } catch (err) {
    await storage?.close().catch(() => {});
    await lock.release();
    throw err;
  }
}

export interface ImageCheckResult extends CheckReport {
  repaired: boolean;
  /** The image could not be opened at all (errors[0] says why). */
  unreadable: boolean;
}

/** Runs every check on the image; with repair, rebuilds derived metadata and rewrites it. */
export async function checkImageStore(store: ImageStore, repair: boolean, onProgress?: CheckProgress): Promise<ImageCheckResult> {
  const notes = [...store.superblockProblems];
  const replayErrors: string[] = [];
  if (store.replay && store.replay.stop !== 'end') {
    const stop = store.replay.stop;
    if (stop.includes('invalid op')) replayErrors.push(`journal: ${stop}`);
    else notes.push(`journal: replay stopped: ${stop} (an interrupted commit; nothing committed is lost)`);
  }
  if (store.replay) notes.push(`journal: replayed ${store.replay.transactions} transactions, ${store.replay.ops} ops`);
  const first = store.verify(onProgress);
  first.errors.unshift(...replayErrors);
  if (!repair || (first.errors.length === 0 && store.superblockProblems.length === 0)) {
    return { ...first, notes, repaired: false, unreadable: false };
  }
  const { meta, dropped } = rebuildMetadata(store.meta, store.checkpointRuns);
  if (dropped > 0) notes.push(`repair: dropped ${dropped} invalid extents`);
  await store.replaceMetadata(meta);
  const after = store.verify();
  notes.push(`repair: rebuilt reference counts and free space; ${first.errors.length} problems before`);
  return { ...after, notes, repaired: true, unreadable: false };
}

export async function checkImageFile(path: string, repair: boolean, onProgress?: CheckProgress): Promise<ImageCheckResult> {
  let store: ImageStore;
  try {
    store = await openImageFile(path, { readOnly: !repair });
  } catch (err) {
    if (err instanceof IomapdError && (err.code === 'CORRUPT' || err.code === 'BAD_MAGIC' || err.code === 'FORMAT_TOO_NEW')) {
      return {
        errors: [`${err.code}: ${err.message}`],
        notes: repair ? ['repair: the image cannot be opened, so it cannot be repaired'] : [],
        volumes: 0,
        extents: 0,
        usedBlocks: 0,
        freeBlocks: 0,
        repaired: false,
        unreadable: true,
      };
    }
    throw err;
  }
  try {
    return await checkImageStore(store, repair, onProgress);
  } finally {
    await store.close();
  }
}
