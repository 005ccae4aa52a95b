// ImageAdmin inside the daemon serving the image: what the control channel calls. Structural
// changes go through the engine, which drains the volume first (semantics K2: a snapshot holds
// every write replied before it), and the export registry follows the image: new volumes,
// snapshots and clones become exports; a deleted volume stops being one. A volume that NBD
// connections use cannot be removed or resized (BUSY): an NBD client cannot be told that its
// disk went away or changed size, so the operator disconnects it first. The same holds for
// changing a volume's require-tls mark: a plain client attached before the change would keep it.
// A require-tls volume is exported only when the server admits TLS clients. Reload is the
// daemon's own (serve wires in its TLS material's reload): it runs beside volume operations, not
// queued behind them, since it touches no volume.
import { isAbsolute } from 'node:path';
import type { GcReport } from '../fs/object/object-gc.ts';
import type { VolumeInfo } from '../fs/volumes.ts';
import type { ExtentInfo } from '../fs/mapping.ts';
import { type VolumeDiff, diffReport } from '../fs/diff.ts';
import { type BackupProgress, type BackupReport, type CopyTo, backupVolume } from './backup.ts';
import type { ServedImage } from './served-image.ts';
import type { ImageCheckResult } from '../fs/image-file.ts';
import type { Export, ExportRegistry } from '../server/export-registry.ts';
import type { NbdServer } from '../server/nbd-server.ts';
import { IomapdError } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import type { CreateVolumeOptions, DaemonStats, ImageAdmin, ImageInfo, ReloadResult } from './admin.ts';

export interface DaemonParts {
  /** The image the daemon serves (its owner closes it, not the control channel). */
  readonly image: ServedImage;
  readonly registry: ExportRegistry;
  readonly server: NbdServer;
  /** The description new exports get (serve's --description). */
  readonly description: string;
  /** Whether the server admits TLS clients (serve --tls on|require): require-tls volumes need it. */
  readonly tls: boolean;
  readonly log: Logger;
  /**
   * Re-reads the TLS material and access lists (serve's ServerSecurity, SIGHUP's work): swaps them
   * whole, or keeps the old, logs why and throws (BAD_ARGUMENT naming the file).
   */
  readonly reload: () => Promise<ReloadResult>;
  /** The copy into a backup's FILE (serve wires in the raw-file copy); without it, no backup op. */
  readonly copyTo?: CopyTo;
}

export class DaemonAdmin implements ImageAdmin {
  private readonly parts: DaemonParts;
  /** Admin operations run one at a time, so each one's checks and registry change stay together. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(parts: DaemonParts) {
    this.parts = parts;
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => {});
    return run;
  }

  async listVolumes(): Promise<VolumeInfo[]> {
    return this.parts.image.volumes.list();
  }

  createVolume(name: string, size: number, opts: CreateVolumeOptions): Promise<VolumeInfo> {
    return this.serial(async () => {
      const info = await this.parts.image.volumes.create(name, size, opts);
      this.exportVolume(name);
      return info;
    });
  }

  deleteVolume(name: string): Promise<void> {
    return this.serial(async () => {
      const exp = this.unexport(name);
      try {
        await this.parts.image.engine.deleteVolume(name);
      } catch (err) {
        if (exp) this.parts.registry.add(exp);
        throw err;
      }
      this.parts.log.info({ volume: name }, 'control: volume removed');
    });
  }

  resizeVolume(name: string, size: number): Promise<VolumeInfo> {
    return this.serial(async () => {
      const exp = this.unexport(name);
      let info: VolumeInfo;
      try {
        info = await this.parts.image.engine.resizeVolume(name, size);
      } catch (err) {
        if (exp) this.parts.registry.add(exp);
        throw err;
      }
      // The old device kept the old size: export the volume again through a new one.
      if (exp) this.exportVolume(name);
      return info;
    });
  }

  setRequireTls(name: string, on: boolean): Promise<VolumeInfo> {
    return this.serial(async () => {
      const { image, tls } = this.parts;
      // Held back only because this server has no TLS (not by serve --export): export it once clear.
      const heldForTls = image.volumes.facts(name).requireTls && !tls;
      const exp = this.unexport(name);
      let info: VolumeInfo;
      try {
        info = await image.volumes.setRequireTls(name, on);
      } catch (err) {
        if (exp) this.parts.registry.add(exp);
        throw err;
      }
      this.parts.log.info({ volume: name, requireTls: on }, 'control: volume require-tls set');
      if (exp || heldForTls) this.exportVolume(name);
      return info;
    });
  }

  snapshot(volume: string, name: string): Promise<VolumeInfo> {
    return this.serial(async () => {
      const info = await this.parts.image.engine.snapshot(volume, name);
      this.exportVolume(name);
      return info;
    });
  }

  clone(snapshot: string, name: string): Promise<VolumeInfo> {
    return this.serial(async () => {
      const info = await this.parts.image.engine.clone(snapshot, name);
      this.exportVolume(name);
      return info;
    });
  }

  async info(): Promise<ImageInfo> {
    const { image } = this.parts;
    return { stats: image.stats(), volumes: image.volumes.list() };
  }

  async map(volume: string): Promise<ExtentInfo[]> {
    return [...this.parts.image.mapper.extents(volume)];
  }

  /** Read-only, like map: not queued behind structural operations. */
  diff(from: string, to: string): Promise<VolumeDiff> {
    const { image } = this.parts;
    return diffReport({ mapper: image.mapper, volumes: image.volumes }, from, to);
  }

  /**
   * The snapshot is taken and exported through the queue like any other (drained first); the copy
   * runs outside it, beside NBD traffic and other admin operations.
   */
  backup(volume: string, file: string, since: string | undefined, onProgress?: BackupProgress): Promise<BackupReport> {
    const { image, copyTo } = this.parts;
    if (copyTo === undefined) return Promise.reject(new IomapdError('NOT_SUPPORTED', 'this daemon was started without backup support'));
    if (!isAbsolute(file)) return Promise.reject(new IomapdError('BAD_ARGUMENT', `the backup file must be an absolute path, got ${JSON.stringify(file)}`));
    const host = {
      volumes: image.volumes,
      mapper: image.mapper,
      imageId: image.stats().uuid,
      snapshot: (v: string, n: string) => this.snapshot(v, n),
      deleteVolume: (n: string) => this.deleteVolume(n),
      device: (n: string) => image.engine.device(n),
    };
    return backupVolume(host, copyTo, volume, file, since, onProgress);
  }

  /** Read-only, like map: not queued behind structural operations (ServedImage.check says why it is consistent). */
  async check(): Promise<ImageCheckResult> {
    const r = await this.parts.image.check();
    this.parts.log.info({ errors: r.errors.length, extents: r.extents, heldMs: Math.round(r.heldMs) }, 'control: served image checked');
    const { heldMs: _held, ...report } = r;
    return report;
  }

  async stats(): Promise<DaemonStats> {
    const { image, registry, server } = this.parts;
    const exports = registry.list().map((e) => ({
      name: e.name,
      size: e.device.size,
      readOnly: e.device.readOnly,
      connections: server.connectionsTo(e),
      counters: { ...image.engine.counters(e.name) },
    }));
    return { pid: process.pid, exports, store: image.stats() };
  }

  reload(): Promise<ReloadResult> {
    return this.parts.reload();
  }

  gc(opts: { graceMs?: number } = {}): Promise<GcReport> {
    return this.parts.image.collectGarbage(opts);
  }

  /** The daemon owns the image; a control connection closing changes nothing. */
  async close(): Promise<void> {}

  private exportVolume(name: string): void {
    const { image, registry, description, tls, log } = this.parts;
    const { requireTls } = image.volumes.facts(name);
    if (requireTls && !tls) {
      log.warn({ volume: name }, 'volume requires TLS and this server serves without it (--tls off): not exported');
      return;
    }
    if (registry.list().some((e) => e.name === name)) return;
    const device = image.engine.device(name);
    registry.add({ name, description, device, requireTls });
    log.info({ export: name, size: device.size, readOnly: device.readOnly, requireTls }, 'control: export added');
  }

  /** Stops exporting `name` if nothing uses it (BUSY otherwise); the export, to restore on failure. */
  private unexport(name: string): Export | null {
    const { registry, server } = this.parts;
    const exp = registry.list().find((e) => e.name === name);
    if (exp === undefined) return null;
    const users = server.connectionsTo(exp);
    if (users > 0) throw new IomapdError('BUSY', `volume "${name}" has ${users} open NBD connection(s); disconnect them first`);
    registry.remove(name);
    return exp;
  }
}
