// Segments of an object-store image: the open segment (in memory, appended to block by block),
// sealed segments (in the cache, pinned, uploading), and uploaded ones (in the bucket, maybe
// cached). Written data becomes readable from the moment it is appended; it becomes durable only
// when a journal object naming it follows the segment's upload (durability.ts).
//
// Uploads are idempotent: a putIfAbsent that loses finds the same bytes when an earlier attempt
// whose answer was lost had landed. Only this writer creates keys of its epoch, so different bytes
// there mean the bucket is damaged (CORRUPT).
import { IomapdError, fail } from '../../util/errors.ts';
import { ObjectConflict, type ObjectStore } from '../../storage/object-store.ts';
import { segmentKey } from './keys.ts';
import type { SegmentLoc } from './object-codec.ts';
import type { SegmentCache } from './segment-cache.ts';

interface OpenSegment {
  readonly num: number;
  readonly buf: Buffer;
  slots: number;
}

interface Sealed {
  readonly key: string;
  readonly bytes: number;
  /** Until the pinned cache copy is written. */
  data: Buffer | null;
  /** The running upload, or null when none runs. */
  upload: Promise<void> | null;
  /** The pinned cache copy being written (unpinned only after it exists). */
  cached: Promise<void>;
}

export class SegmentLog {
  private readonly store: ObjectStore;
  readonly cache: SegmentCache;
  readonly epoch: number;
  private readonly blockSize: number;
  readonly segmentBlocks: number;
  private open: OpenSegment | null = null;
  /** Segment numbers start at 0 in every epoch: the epoch in the key keeps them unique. */
  private nextNum = 0;
  /** Sealed and not yet known uploaded, by key. */
  private readonly sealed = new Map<string, Sealed>();
  private readonly fetching = new Map<string, Promise<Buffer | null>>();
  /** Whole-segment GETs made for reads (tests and stats). */
  fetches = 0;

  constructor(store: ObjectStore, cache: SegmentCache, epoch: number, blockSize: number, segmentBlocks: number) {
    this.store = store;
    this.cache = cache;
    this.epoch = epoch;
    this.blockSize = blockSize;
    this.segmentBlocks = segmentBlocks;
  }

  /** Bytes written here and not yet uploaded (the open segment and the sealed ones). */
  get unuploadedBytes(): number {
    let n = this.open ? this.open.slots * this.blockSize : 0;
    for (const s of this.sealed.values()) n += s.bytes;
    return n;
  }

  /** Appends one whole block; synchronous, so a check-then-append is atomic for the caller. */
  append(block: Buffer): SegmentLoc {
    if (block.length !== this.blockSize) throw new Error(`segment append of ${block.length} bytes`);
    if (!this.open) this.open = { num: this.nextNum++, buf: Buffer.alloc(this.segmentBlocks * this.blockSize), slots: 0 };
    const o = this.open;
    block.copy(o.buf, o.slots * this.blockSize);
    const loc = { epoch: this.epoch, num: o.num, slot: o.slots++ };
    if (o.slots === this.segmentBlocks) this.seal();
    return loc;
  }

  /** Closes the open segment (if it holds anything) and starts its upload in the background. */
  seal(): void {
    const o = this.open;
    if (!o || o.slots === 0) return;
    this.open = null;
    const data = o.buf.subarray(0, o.slots * this.blockSize);
    const key = segmentKey(this.epoch, o.num);
    const cached = this.cache.put(key, data, true).then(
      () => {
        s.data = null;
      },
      () => {}, // the cache could not take it: it stays in memory until uploaded
    );
    const s: Sealed = { key, bytes: data.length, data, upload: null, cached };
    this.sealed.set(s.key, s);
    this.startUpload(s).catch(() => {}); // a failure is retried by the next commit
  }

  private startUpload(s: Sealed): Promise<void> {
    s.upload ??= this.upload(s).finally(() => (s.upload = null));
    return s.upload;
  }

  private async upload(s: Sealed): Promise<void> {
    const data = s.data ?? (await this.cache.get(s.key));
    if (!data) fail('IO', `segment ${s.key} is lost from the local cache before its upload`);
    try {
      await this.store.putIfAbsent(s.key, data);
    } catch (err) {
      if (!(err instanceof ObjectConflict)) throw err;
      const there = await this.store.get(s.key);
      if (!there || !there.body.equals(data)) throw new IomapdError('CORRUPT', `segment ${s.key} in the bucket differs from the one this writer sealed`);
    }
    // Leave `sealed` only once the cache's copy is written and unpinned: uploadAll() (commit,
    // close) waits for what is in `sealed`, so no cache write or eviction of this segment is still
    // running when it returns (a new opener empties the cache directory; its bound is then kept).
    await s.cached;
    await this.cache.unpin(s.key);
    this.sealed.delete(s.key);
  }

  /** Seals the open segment and resolves once every sealed segment is uploaded (retrying failed ones). */
  async uploadAll(): Promise<void> {
    this.seal();
    await Promise.all([...this.sealed.values()].map((s) => this.startUpload(s)));
  }

  /**
   * Waits for one upload to finish (the data area's back-pressure), sealing the open segment if
   * nothing else uploads; rejects with its failure; false when there was nothing to upload.
   */
  async waitForUpload(): Promise<boolean> {
    if (this.sealed.size === 0) this.seal();
    const running = [...this.sealed.values()];
    if (running.length === 0) return false;
    await Promise.race(running.map((s) => this.startUpload(s)));
    return true;
  }

  /** True while `loc` is in the open segment or a segment not yet uploaded. */
  isLocal(loc: SegmentLoc): boolean {
    return (this.open !== null && loc.epoch === this.epoch && loc.num === this.open.num) || this.sealed.has(segmentKey(loc.epoch, loc.num));
  }

  /** Keys this writer still has to upload: never orphans for GC. */
  unuploadedKeys(): Set<string> {
    const keys = new Set(this.sealed.keys());
    if (this.open) keys.add(segmentKey(this.epoch, this.open.num));
    return keys;
  }

  /**
   * Copies bytes from slot `loc.slot` of its segment, `from` bytes in, into `into` (which may run
   * on over the following slots); false if the segment is gone or shorter.
   */
  async readAt(loc: SegmentLoc, from: number, into: Buffer): Promise<boolean> {
    const at = loc.slot * this.blockSize + from;
    if (this.open && loc.epoch === this.epoch && loc.num === this.open.num) {
      if (at + into.length > this.open.slots * this.blockSize) return false;
      this.open.buf.copy(into, 0, at, at + into.length);
      return true;
    }
    const key = segmentKey(loc.epoch, loc.num);
    const s = this.sealed.get(key);
    if (s?.data) {
      if (at + into.length > s.data.length) return false;
      s.data.copy(into, 0, at, at + into.length);
      return true;
    }
    if (await this.cache.read(key, at, into)) return true;
    let p = this.fetching.get(key);
    if (!p) {
      p = this.fetch(key).finally(() => this.fetching.delete(key));
      this.fetching.set(key, p);
    }
    const bytes = await p;
    if (!bytes || at + into.length > bytes.length) return false;
    bytes.copy(into, 0, at, at + into.length);
    return true;
  }

  private async fetch(key: string): Promise<Buffer | null> {
    this.fetches++;
    const got = await this.store.get(key);
    if (!got) return null;
    await this.cache.put(key, got.body, false).catch(() => {});
    return got.body;
  }
}
