// Opening an image's backing file in the chosen cache mode:
//   none      O_DIRECT (direct-file-storage.ts), if the filesystem passes the probe; else buffered
//   writeback buffered through the page cache (file-storage.ts); durability still comes from
//             fdatasync at FUA and FLUSH, so "writeback" loses nothing that was acknowledged durable
// Either way the storage comes wrapped in the poison latch (poison-latch.ts).
import type { InlineIoGates, InlineIoModes } from '../util/fd-io.ts';
import { DirectFileStorage } from './direct-file-storage.ts';
import { FileStorage } from './file-storage.ts';
import { PoisonLatch } from './poison-latch.ts';

export type CacheMode = 'none' | 'writeback';
export const CACHE_MODES: readonly CacheMode[] = ['none', 'writeback'];

export interface OpenedFile {
  readonly storage: PoisonLatch;
  /** O_DIRECT is in use. */
  readonly direct: boolean;
  /** Why `none` fell back to buffered I/O (null when it did not). */
  readonly fallback: string | null;
  /** The buffered file's inline-I/O gates (metrics read their counters); null with O_DIRECT. */
  readonly gates: InlineIoGates | null;
}

/** `openDirect` is replaceable so tests can make the probe fail on a filesystem that has O_DIRECT. */
export async function openFileStorage(
  path: string,
  opts: { readOnly?: boolean; cache?: CacheMode; inline?: InlineIoModes } = {},
  openDirect: typeof DirectFileStorage.open = (p, o) => DirectFileStorage.open(p, o),
): Promise<OpenedFile> {
  let fallback: string | null = null;
  if (opts.cache === 'none') {
    const direct = await openDirect(path, { readOnly: opts.readOnly ?? false });
    if (direct.ok) return { storage: new PoisonLatch(direct.storage), direct: true, fallback: null, gates: null };
    fallback = direct.reason;
  }
  const buffered = await FileStorage.open(path, { readOnly: opts.readOnly ?? false, inline: opts.inline });
  return { storage: new PoisonLatch(buffered), direct: false, fallback, gates: buffered.gates };
}
