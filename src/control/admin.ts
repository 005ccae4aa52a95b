// What the CLI's image commands ask of an image, whoever holds it: the CLI process itself (the
// image is idle: LocalAdmin opens it), or a running daemon (RemoteAdmin over IMAGE.ctl, answered
// by DaemonAdmin inside the daemon). The CLI only parses and prints around these calls.
import type { VolumeCounters } from '../engine/counters.ts';
import type { StoreStats } from '../fs/image-store.ts';
import type { GcReport } from '../fs/object/object-gc.ts';
import type { VolumeInfo } from '../fs/volumes.ts';
import type { ExtentInfo } from '../fs/mapping.ts';
import type { VolumeDiff } from '../fs/diff.ts';
import type { BackupProgress, BackupReport } from './backup.ts';
import type { ImageCheckResult } from '../fs/image-file.ts';
import type { TlsMode } from '../server/export-registry.ts';

export interface ImageInfo {
  readonly stats: StoreStats;
  readonly volumes: VolumeInfo[];
}

export interface ExportStats {
  /** The export's name (the volume's). */
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  /** NBD connections in transmission with this export right now. */
  readonly connections: number;
  readonly counters: VolumeCounters;
}

export interface DaemonStats {
  readonly pid: number;
  readonly exports: ExportStats[];
  readonly store: StoreStats;
}

/** What a daemon's reload re-read. */
export interface ReloadResult {
  /** The daemon's --tls mode (fixed for its life; `off` re-reads no TLS material). */
  readonly tls: TlsMode;
  /** Exports that the reloaded --allow and --access lists restrict to named identities. */
  readonly restrictedExports: number;
}

export interface CreateVolumeOptions {
  readonly preallocate: boolean;
  readonly readOnly: boolean;
  /** Serve the volume only to TLS clients. */
  readonly requireTls?: boolean;
}

export interface ImageAdmin {
  listVolumes(): Promise<VolumeInfo[]>;
  createVolume(name: string, size: number, opts: CreateVolumeOptions): Promise<VolumeInfo>;
  deleteVolume(name: string): Promise<void>;
  resizeVolume(name: string, size: number): Promise<VolumeInfo>;
  /** Marks a volume as served only to TLS clients, or clears the mark. */
  setRequireTls(name: string, on: boolean): Promise<VolumeInfo>;
  snapshot(volume: string, name: string): Promise<VolumeInfo>;
  clone(snapshot: string, name: string): Promise<VolumeInfo>;
  info(): Promise<ImageInfo>;
  map(volume: string): Promise<ExtentInfo[]>;
  /** The ranges where snapshot `from` and `to` may differ (src/fs/diff.ts; docs/BACKUP.md). */
  diff(from: string, to: string): Promise<VolumeDiff>;
  /**
   * `iomapd backup` (src/control/backup.ts) run by the daemon serving the image; `file` is an
   * absolute path. An idle image is backed up by the CLI itself (LocalAdmin: NOT_SUPPORTED).
   */
  backup(volume: string, file: string, since: string | undefined, onProgress?: BackupProgress): Promise<BackupReport>;
  /**
   * A read-only check of the image's metadata (`iomapd check`): a daemon checks its live metadata
   * as one committed state while it keeps serving (ServedImage.check); repair needs an idle image.
   */
  check(): Promise<ImageCheckResult>;
  /** Per-export counters: only a running daemon has them (NOT_RUNNING otherwise). */
  stats(): Promise<DaemonStats>;
  /**
   * Re-reads the daemon's certificates, CRL, PSK file and access file and swaps them in whole; a
   * broken file keeps the old material and fails with its error (NOT_RUNNING without a daemon).
   */
  reload(): Promise<ReloadResult>;
  /**
   * One garbage-collection pass over a bucket image (BAD_ARGUMENT for a file image). `graceMs`: how
   * long an older writer's unreferenced segment must have been seen by this process before it is
   * deleted (default 10 min; 0 when no older writer can still be uploading).
   */
  gc(opts?: { graceMs?: number }): Promise<GcReport>;
  close(): Promise<void>;
}
