// A served image: the open store and the engine over it, held together by the one owner that
// opened the store and is the only one to close it (the daemon in `iomapd serve`). The control
// channel works through this object's parts (volumes, mapper, engine), never through the engine.
import { Engine } from '../engine/engine.ts';
import type { StoreStats } from '../fs/image-store.ts';
import type { GcOptions, GcReport } from '../fs/object/object-gc.ts';
import type { ServableImage } from '../fs/servable-image.ts';
import type { Mapper } from '../fs/mapper.ts';
import type { Volumes } from '../fs/volumes.ts';
import { IomapdError } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';

export class ServedImage {
  readonly engine: Engine;
  private readonly store: ServableImage;
  private closing: Promise<void> | null = null;

  /** Takes ownership of `store`: close() closes it. */
  constructor(store: ServableImage, log: Logger | null = null) {
    this.store = store;
    this.engine = new Engine(store, log);
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
