// A served image: the open store and the engine over it, held together by the one owner that
// opened the store and is the only one to close it (the daemon in `iomapd serve`). The control
// channel works through this object's parts (volumes, mapper, engine), never through the engine.
import { Engine } from '../engine/engine.ts';
import { materializedShared } from '../fs/check.ts';
import { ImageStore, type StoreStats } from '../fs/image-store.ts';
import type { GcOptions, GcReport } from '../fs/object/object-gc.ts';
import type { ServableImage } from '../fs/servable-image.ts';
import type { Mapper } from '../fs/mapper.ts';
import type { Volumes } from '../fs/volumes.ts';
import type { MinBlockSize } from '../engine/block-sizes.ts';
import { IomapdError } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import { type LiveCheckResult, checkServedStore } from './live-check.ts';
import { MeteredDurability } from './metered-durability.ts';

/** How long a computed shared-bytes figure is reused (metrics scrapes). */
const SHARED_TTL_MS = 30_000;

export class ServedImage {
  readonly engine: Engine;
  private readonly store: ServableImage;
  private closing: Promise<void> | null = null;
  private shared: { at: number; bytes: number } | null = null;
  /** The engine's durability with its commits timed (`serve --metrics`); null otherwise. */
  readonly metered: MeteredDurability | null;

  /** Takes ownership of `store`: close() closes it. */
  constructor(store: ServableImage, log: Logger | null = null, opts: { readonly meterCommits?: boolean; readonly minimumBlock?: MinBlockSize } = {}) {
    this.store = store;
    this.metered = opts.meterCommits === true ? new MeteredDurability(store.durability) : null;
    const { mapper, volumes, data } = store;
    const engineOpts = opts.minimumBlock === undefined ? {} : { minimumBlock: opts.minimumBlock };
    this.engine = new Engine(this.metered === null ? store : { mapper, volumes, data, durability: this.metered }, log, engineOpts);
  }

  /** Opened read-only (a bucket image: without the writer role). */
  get readOnly(): boolean {
    return this.store.readOnly;
  }

  get volumes(): Volumes {
    return this.store.volumes;
  }

  get mapper(): Mapper {
    return this.store.mapper;
  }

  stats(): StoreStats {
    return this.store.stats();
  }

  /**
   * Physical bytes referenced more than once (shared by snapshots and clones). Since format 3 a
   * snapshot shares tree nodes and the refcount table holds only what has been copied apart, so
   * the figure needs a walk of every map: O(extents log extents). It is kept for SHARED_TTL_MS,
   * so a scrape every few seconds costs one walk per TTL (about 1 s of CPU at 10^6 extents).
   */
  sharedBytes(): number {
    const now = Date.now();
    if (this.shared === null || now - this.shared.at > SHARED_TTL_MS) {
      let blocks = 0;
      for (const run of materializedShared(this.store.meta)) blocks += run.len;
      this.shared = { at: now, bytes: blocks * this.store.blockSize };
    }
    return this.shared.bytes;
  }

  /** A read-only check of the metadata while the image is served (live-check.ts says how). */
  check(): Promise<LiveCheckResult> {
    if (!(this.store instanceof ImageStore)) {
      // A bucket image is checked from the bucket by `iomapd check s3://...` (it reads, never writes).
      return Promise.reject(new IomapdError('NOT_SUPPORTED', 'a served bucket image is checked from the bucket: iomapd check s3://BUCKET/PREFIX'));
    }
    return checkServedStore(this.store);
  }


  /** A GC pass over a bucket image (BAD_ARGUMENT for a file image, which reuses freed space in place). */
  collectGarbage(opts: GcOptions = {}): Promise<GcReport> {
    if (!this.store.collectGarbage) {
      return Promise.reject(new IomapdError('BAD_ARGUMENT', 'gc applies to object-store images: a file image reuses freed blocks in place'));
    }
    return this.store.collectGarbage(opts);
  }

  /** Commits, checkpoints and closes the store (once; later calls wait for the first). */
  close(): Promise<void> {
    this.closing ??= this.store.close();
    return this.closing;
  }
}
