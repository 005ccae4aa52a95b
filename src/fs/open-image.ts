// Opening, creating and checking an image by name (image-name.ts): a file image through
// fs/image-file.ts, a bucket image through storage/s3 and fs/object. Whatever opens it gets a
// ServableImage and is its one owner: close() commits, closes the image and, for a bucket image,
// the store's HTTP client.
import { openImageFile } from './image-file.ts';
import { checkObjectImageStore, collectObjectImageGarbage, createObjectImage, openObjectImage } from './object/object-image.ts';
import type { ObjectImageStore } from './object/object-image-store.ts';
import type { ObjectCheckReport } from './object/object-check.ts';
import type { GcOptions, GcReport } from './object/object-gc.ts';
import type { ServableImage } from './servable-image.ts';
import type { CreateVolumeOptions, VolumeInfo } from './volumes.ts';
import type { StoreStats } from './image-store.ts';
import { S3ObjectStore } from '../storage/s3/s3-object-store.ts';
import type { Logger } from '../util/log.ts';
import { resolveImageName } from './image-name.ts';

/** --cache-dir / --cache-size: the local cache of a bucket image (ignored for a file). */
export interface ObjectImageOptions {
  readonly cacheDir?: string | null;
  readonly cacheSize?: number;
  readonly log?: Logger;
}

/** A bucket image as a ServableImage that also closes its store, and can collect garbage. */
export class OpenObjectImage implements ServableImage {
  readonly image: ObjectImageStore;
  private readonly store: S3ObjectStore;

  constructor(image: ObjectImageStore, store: S3ObjectStore) {
    this.image = image;
    this.store = store;
  }

  get mapper() {
    return this.image.mapper;
  }
  get volumes() {
    return this.image.volumes;
  }
  get data() {
    return this.image.data;
  }
  get durability() {
    return this.image.durability;
  }
  get blockSize(): number {
    return this.image.blockSize;
  }
  get readOnly(): boolean {
    return this.image.readOnly;
  }
  get meta() {
    return this.image.meta;
  }
  stats(): StoreStats {
    return this.image.stats();
  }
  createVolume(name: string, size: number, opts?: CreateVolumeOptions): Promise<VolumeInfo> {
    return this.image.createVolume(name, size, opts);
  }
  listVolumes(): VolumeInfo[] {
    return this.image.listVolumes();
  }
  collectGarbage(opts: GcOptions = {}): Promise<GcReport> {
    return collectObjectImageGarbage(this.image, opts);
  }
  async close(): Promise<void> {
    try {
      await this.image.close();
    } finally {
      this.store.close();
    }
  }
}

/** Opens an image by name; read-write on a bucket image takes the writer role (fencing an earlier one). */
export async function openImageByName(name: string, readOnly: boolean, opts: ObjectImageOptions = {}): Promise<ServableImage> {
  const image = resolveImageName(name);
  if (image.kind === 'file') return openImageFile(image.path, { readOnly });
  const store = await S3ObjectStore.connect(image.url, { requirePrefix: true });
  try {
    const opened = await openObjectImage(store, {
      readOnly,
      ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
      ...(opts.cacheSize !== undefined ? { cacheSize: opts.cacheSize } : {}),
      ...(opts.log ? { log: opts.log } : {}),
    });
    return new OpenObjectImage(opened, store);
  } catch (err) {
    store.close();
    throw err;
  }
}

/** Creates a bucket image under an empty prefix (ALREADY_EXISTS otherwise), open read-write. */
export async function createObjectImageByName(
  url: string,
  create: { dataBytes: number; blockSize: number },
  opts: ObjectImageOptions = {},
): Promise<OpenObjectImage> {
  const store = await S3ObjectStore.connect(url);
  try {
    const image = await createObjectImage(store, {
      ...create,
      ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
      ...(opts.cacheSize !== undefined ? { cacheSize: opts.cacheSize } : {}),
      ...(opts.log ? { log: opts.log } : {}),
    });
    return new OpenObjectImage(image, store);
  } catch (err) {
    store.close();
    throw err;
  }
}

/** check of a bucket image: reads only (no writer role), so it runs beside a serving daemon. */
export async function checkObjectImageByName(url: string): Promise<ObjectCheckReport> {
  const store = await S3ObjectStore.connect(url, { requirePrefix: true });
  try {
    return await checkObjectImageStore(store);
  } finally {
    store.close();
  }
}
