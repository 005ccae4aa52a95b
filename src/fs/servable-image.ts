// What the daemon, the control channel and the CLI use of an open image, whatever the backend:
// the file image (image-store.ts) and the object-store image (object/object-image-store.ts) both
// provide it, so ServedImage, LocalAdmin and serve are written once.
import type { StoreStats } from './image-store.ts';
import type { GcOptions, GcReport } from './object/object-gc.ts';
import type { Metadata } from './state.ts';
import type { StoreParts } from './store-parts.ts';
import type { CreateVolumeOptions, VolumeInfo } from './volumes.ts';

export interface ServableImage extends StoreParts {
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** The in-memory metadata, read-only to callers (space figures such as shared bytes). */
  readonly meta: Metadata;
  stats(): StoreStats;
  createVolume(name: string, size: number, opts?: CreateVolumeOptions): Promise<VolumeInfo>;
  listVolumes(): VolumeInfo[];
  /** Reclaims dead space (bucket images); absent where freed space is reused in place (a file). */
  collectGarbage?(opts?: GcOptions): Promise<GcReport>;
  /** Commits and closes (the one owner calls it, once). */
  close(): Promise<void>;
}
