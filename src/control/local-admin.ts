// ImageAdmin on an image no daemon holds: this process opens it (a file image: taking its lock; a
// bucket image read-write: taking the writer role) for the command, and, as its one owner, closes
// it in close().
import type { GcReport } from '../fs/object/object-gc.ts';
import { type ObjectImageOptions, openImageByName } from '../fs/open-image.ts';
import type { ServableImage } from '../fs/servable-image.ts';
import { type ImageCheckResult, checkImageStore } from '../fs/image-file.ts';
import { ImageStore } from '../fs/image-store.ts';
import type { VolumeInfo } from '../fs/volumes.ts';
import type { ExtentInfo } from '../fs/mapping.ts';
import { type VolumeDiff, diffReport } from '../fs/diff.ts';
import type { BackupReport } from './backup.ts';
import { IomapdError } from '../util/errors.ts';
import type { CreateVolumeOptions, DaemonStats, ImageAdmin, ImageInfo, ReloadResult } from './admin.ts';

export class LocalAdmin implements ImageAdmin {
  private readonly store: ServableImage;
  private readonly path: string;

  private constructor(store: ServableImage, path: string) {
    this.store = store;
    this.path = path;
  }

  /** `name`: a file path or `s3://BUCKET/PREFIX` (fs/image-name.ts). */
  static async open(name: string, readOnly: boolean, objectOptions: ObjectImageOptions = {}): Promise<LocalAdmin> {
    return new LocalAdmin(await openImageByName(name, readOnly, objectOptions), name);
  }

  async listVolumes(): Promise<VolumeInfo[]> {
    return this.store.volumes.list();
  }

  createVolume(name: string, size: number, opts: CreateVolumeOptions): Promise<VolumeInfo> {
    return this.store.volumes.create(name, size, opts);
  }

  deleteVolume(name: string): Promise<void> {
    return this.store.volumes.delete(name);
  }

  resizeVolume(name: string, size: number): Promise<VolumeInfo> {
    return this.store.volumes.resize(name, size);
  }

  setRequireTls(name: string, on: boolean): Promise<VolumeInfo> {
    return this.store.volumes.setRequireTls(name, on);
  }

  snapshot(volume: string, name: string): Promise<VolumeInfo> {
    return this.store.volumes.snapshot(volume, name);
  }

  clone(snapshot: string, name: string): Promise<VolumeInfo> {
    return this.store.volumes.clone(snapshot, name);
  }

  async info(): Promise<ImageInfo> {
    return { stats: this.store.stats(), volumes: this.store.volumes.list() };
  }

  async map(volume: string): Promise<ExtentInfo[]> {
    return [...this.store.mapper.extents(volume)];
  }

  diff(from: string, to: string): Promise<VolumeDiff> {
    return diffReport(this.store, from, to);
  }

  async backup(): Promise<BackupReport> {
    throw new IomapdError('NOT_SUPPORTED', `${this.path} is not served: iomapd backup copies an idle image itself`);
  }

  /** The offline check, read-only, on the image this process opened. */
  check(): Promise<ImageCheckResult> {
    if (!(this.store instanceof ImageStore)) {
      return Promise.reject(new IomapdError('NOT_SUPPORTED', `${this.path} is a bucket image: iomapd check reads it from the bucket`));
    }
    return checkImageStore(this.store, false);
  }

  async stats(): Promise<DaemonStats> {
    throw new IomapdError('NOT_RUNNING', `no iomapd daemon is serving ${this.path}: counters exist only in a running daemon`);
  }

  async reload(): Promise<ReloadResult> {
    throw new IomapdError('NOT_RUNNING', `no iomapd daemon is serving ${this.path}: there is no TLS material or access list to reload`);
  }

  gc(opts: { graceMs?: number } = {}): Promise<GcReport> {
    if (!this.store.collectGarbage) {
      return Promise.reject(new IomapdError('BAD_ARGUMENT', `gc applies to object-store images: ${this.path} is a file image, which reuses freed blocks in place`));
    }
    return this.store.collectGarbage(opts);
  }

  close(): Promise<void> {
    return this.store.close();
  }
}
