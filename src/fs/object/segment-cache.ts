// The local cache of an object-store image (`--cache-dir`, bounded by `--cache-size`): whole
// segments, each either pinned (sealed, not yet uploaded: the only copy of written data until its
// commit) or clean (a copy of an uploaded segment, evicted least recently used). Pinned segments
// are never evicted; the data area holds writes back when pinned bytes reach the bound.
// Without a directory the bytes are kept in memory (tests, small images).
import { mkdir, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

interface Entry {
  bytes: number;
  pinned: boolean;
  /** In-memory copy (memory mode), or null when the bytes are in the directory. */
  data: Buffer | null;
}

const SUFFIX = '.iomapd-seg';

export class SegmentCache {
  readonly dir: string | null;
  readonly limit: number;
  /** Insertion order is recency: a hit moves the entry to the end. */
  private readonly entries = new Map<string, Entry>();
  private total = 0;
  private pinnedTotal = 0;
  hits = 0;
  misses = 0;

  private constructor(dir: string | null, limit: number) {
    this.dir = dir;
    this.limit = limit;
  }

  /** A cache in `dir` (created; our stale files from an earlier run are removed) or in memory. */
  static async open(dir: string | null, limit: number): Promise<SegmentCache> {
    if (dir !== null) {
      await mkdir(dir, { recursive: true });
      for (const f of await readdir(dir)) if (f.endsWith(SUFFIX)) await rm(join(dir, f), { force: true });
    }
    return new SegmentCache(dir, limit);
  }

  get bytes(): number {
    return this.total;
  }

  get pinnedBytes(): number {
    return this.pinnedTotal;
  }

  private file(key: string): string {
    return join(this.dir!, key.replaceAll('/', '_') + SUFFIX);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Stores a whole segment; pinned ones stay until unpin(). */
  async put(key: string, data: Buffer, pinned: boolean): Promise<void> {
    if (this.entries.has(key)) return;
    if (this.dir !== null) await writeFile(this.file(key), data);
    if (this.entries.has(key)) return;
    this.entries.set(key, { bytes: data.length, pinned, data: this.dir === null ? data : null });
    this.total += data.length;
    if (pinned) this.pinnedTotal += data.length;
    await this.evict();
  }

  /** The segment was uploaded: it may now be evicted. */
  async unpin(key: string): Promise<void> {
    const e = this.entries.get(key);
    if (!e || !e.pinned) return;
    e.pinned = false;
    this.pinnedTotal -= e.bytes;
    await this.evict();
  }

  /** The whole segment, or null on a miss. */
  async get(key: string): Promise<Buffer | null> {
    const e = this.entries.get(key);
    if (!e) {
      this.misses++;
      return null;
    }
    this.entries.delete(key);
    this.entries.set(key, e);
    this.hits++;
    if (e.data) return e.data;
    try {
      return await readFile(this.file(key));
    } catch {
      // Evicted under us, or the directory was damaged: a miss (the bucket has it if uploaded).
      if (!e.pinned) this.drop(key);
      return null;
    }
  }

  /** Copies bytes [at, at+into.length) of a cached segment into `into`; false on a miss. */
  async read(key: string, at: number, into: Buffer): Promise<boolean> {
    const e = this.entries.get(key);
    if (!e || at + into.length > e.bytes) {
      this.misses++;
      return false;
    }
    this.entries.delete(key);
    this.entries.set(key, e);
    this.hits++;
    if (e.data) {
      e.data.copy(into, 0, at, at + into.length);
      return true;
    }
    try {
      const fh = await open(this.file(key), 'r');
      try {
        const { bytesRead } = await fh.read(into, 0, into.length, at);
        if (bytesRead === into.length) return true;
      } finally {
        await fh.close();
      }
    } catch {
      // Evicted under us or damaged: a miss below.
    }
    if (!e.pinned) this.drop(key);
    return false;
  }

  async delete(key: string): Promise<void> {
    const e = this.drop(key);
    if (e && this.dir !== null) await rm(this.file(key), { force: true });
  }

  private drop(key: string): Entry | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.entries.delete(key);
    this.total -= e.bytes;
    if (e.pinned) this.pinnedTotal -= e.bytes;
    return e;
  }

  private async evict(): Promise<void> {
    for (const [key, e] of [...this.entries]) {
      if (this.total <= this.limit) return;
      if (!e.pinned) await this.delete(key);
    }
  }
}
