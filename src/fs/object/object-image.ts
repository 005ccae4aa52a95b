// Opening an image kept in an object store, beside image-file.ts's openers for a file: what the
// CLI calls once it routes an `s3://BUCKET/PREFIX` name here (the ObjectStore comes from
// storage/s3). `ServableImage` is what the daemon and the control channel use of an open image
// (ServedImage, LocalAdmin, serve), in ../servable-image.ts; both ImageStore and ObjectImageStore
// provide it.
import type { ObjectStore } from '../../storage/object-store.ts';
import { type ObjectCheckReport, checkObjectImage } from './object-check.ts';
import { type GcOptions, type GcReport, collectGarbage } from './object-gc.ts';
import { type ObjectCreateOptions, ObjectImageStore, type ObjectOpenOptions } from './object-image-store.ts';

export type { ObjectCreateOptions, ObjectOpenOptions } from './object-image-store.ts';

export type { ServableImage } from '../servable-image.ts';

/** Creates an image under the store's prefix (ALREADY_EXISTS if one is there), open read-write. */
export function createObjectImage(store: ObjectStore, opts: ObjectCreateOptions): Promise<ObjectImageStore> {
  return ObjectImageStore.create(store, opts);
}

/** Opens the image; read-write takes the writer role and fences any earlier writer. */
export function openObjectImage(store: ObjectStore, opts: ObjectOpenOptions = {}): Promise<ObjectImageStore> {
  return ObjectImageStore.open(store, opts);
}

/** check: every reference resolves; lists leaked objects. Reads only. */
export function checkObjectImageStore(store: ObjectStore): Promise<ObjectCheckReport> {
  return checkObjectImage(store);
}

/** GC of an image open read-write here (`iomapd gc` or a daemon's background pass). */
export function collectObjectImageGarbage(image: ObjectImageStore, opts: GcOptions = {}): Promise<GcReport> {
  return collectGarbage(image, opts);
}
