// ImageAdmin through a running daemon's control channel: each call is one request line and one
// response line, one at a time, each bounded by a timeout.
import { connect, type Socket } from 'node:net';
import type { GcReport } from '../fs/object/object-gc.ts';
import type { VolumeInfo } from '../fs/volumes.ts';
import type { ExtentInfo } from '../fs/mapping.ts';
import type { VolumeDiff } from '../fs/diff.ts';
import type { BackupProgress, BackupReport } from './backup.ts';
import type { ImageCheckResult } from '../fs/image-file.ts';
import { IomapdError } from '../util/errors.ts';
import type { CreateVolumeOptions, DaemonStats, ImageAdmin, ImageInfo, ReloadResult } from './admin.ts';
import { encodeLine, responseError, type ControlProgress, type ControlResponse } from './wire.ts';

const CONNECT_TIMEOUT_MS = 5_000;
/** Generous: a snapshot waits for the volume's in-flight writes to drain. */
const REQUEST_TIMEOUT_MS = 120_000;
/** A backup copies data: bounded, but by a day, not two minutes. */
const BACKUP_TIMEOUT_MS = 24 * 3600_000;
/** A check commits first and walks every extent: seconds at 10^7 extents, so more than the default. */
const CHECK_TIMEOUT_MS = 30 * 60_000;
/** A response (a long extent map) larger than this is refused rather than buffered. */
const MAX_RESPONSE_BYTES = 256 * 1024 * 1024;

export class RemoteAdmin implements ImageAdmin {
  readonly path: string;
  private readonly socket: Socket;
  private nextId = 1;
  private buffered = '';
  private waiter: ((line: string | Error) => void) | null = null;
  private ended: Error | null = null;

  private constructor(path: string, socket: Socket) {
    this.path = path;
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new IomapdError('IO', `control channel ${path}: ${err.message}`)));
    socket.on('close', () => this.fail(new IomapdError('IO', `the daemon closed the control channel ${path}`)));
  }

  static connect(path: string, timeoutMs = CONNECT_TIMEOUT_MS): Promise<RemoteAdmin> {
    return new Promise((resolve, reject) => {
      const socket = connect({ path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new IomapdError('IO', `no answer from the control channel ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RemoteAdmin(path, socket));
      });
    });
  }

  listVolumes(): Promise<VolumeInfo[]> {
    return this.request('volume.ls', {}) as Promise<VolumeInfo[]>;
  }

  createVolume(name: string, size: number, opts: CreateVolumeOptions): Promise<VolumeInfo> {
    return this.request('volume.create', { name, size, ...opts }) as Promise<VolumeInfo>;
  }

  async deleteVolume(name: string): Promise<void> {
    await this.request('volume.rm', { name });
  }

  resizeVolume(name: string, size: number): Promise<VolumeInfo> {
    return this.request('volume.resize', { name, size }) as Promise<VolumeInfo>;
  }

  setRequireTls(name: string, on: boolean): Promise<VolumeInfo> {
    return this.request('volume.set', { name, requireTls: on }) as Promise<VolumeInfo>;
  }

  snapshot(volume: string, name: string): Promise<VolumeInfo> {
    return this.request('snapshot', { volume, name }) as Promise<VolumeInfo>;
  }

  clone(snapshot: string, name: string): Promise<VolumeInfo> {
    return this.request('clone', { snapshot, name }) as Promise<VolumeInfo>;
  }

  info(): Promise<ImageInfo> {
    return this.request('info', {}) as Promise<ImageInfo>;
  }

  map(volume: string): Promise<ExtentInfo[]> {
    return this.request('map', { volume }) as Promise<ExtentInfo[]>;
  }

  diff(from: string, to: string): Promise<VolumeDiff> {
    return this.request('diff', { from, to }) as Promise<VolumeDiff>;
  }

  backup(volume: string, file: string, since: string | undefined, onProgress?: BackupProgress): Promise<BackupReport> {
    // A copy takes as long as the data it moves: no two-minute limit on this one.
    return this.request('backup', { volume, file, ...(since === undefined ? {} : { since }) }, BACKUP_TIMEOUT_MS, onProgress) as Promise<BackupReport>;
  }

  check(): Promise<ImageCheckResult> {
    return this.request('check', {}, CHECK_TIMEOUT_MS) as Promise<ImageCheckResult>;
  }

  stats(): Promise<DaemonStats> {
    return this.request('stats', {}) as Promise<DaemonStats>;
  }

  reload(): Promise<ReloadResult> {
    return this.request('reload', {}) as Promise<ReloadResult>;
  }

  gc(opts: { graceMs?: number } = {}): Promise<GcReport> {
    return this.request('gc', opts.graceMs === undefined ? {} : { graceMs: opts.graceMs }) as Promise<GcReport>;
  }

  async close(): Promise<void> {
    this.socket.end();
    this.socket.destroy();
  }

  private async request(op: string, args: Record<string, unknown>, timeoutMs = REQUEST_TIMEOUT_MS, onProgress?: BackupProgress): Promise<unknown> {
    if (this.waiter !== null) throw new Error('RemoteAdmin: one request at a time');
    const id = this.nextId++;
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new IomapdError('IO', `the daemon did not answer "${op}" within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiter = (got) => {
        // A progress line of this request: report it and keep waiting for the response.
        if (typeof got === 'string' && got.includes('"progress"')) {
          const p = parseOrNull(got);
          if (p !== null && p.id === id && p.progress !== undefined) {
            onProgress?.(p.progress.done, p.progress.total);
            return;
          }
        }
        clearTimeout(timer);
        this.waiter = null;
        if (got instanceof Error) reject(got);
        else resolve(got);
      };
      if (this.ended) return this.waiter(this.ended);
      this.socket.write(encodeLine({ id, op, args }));
      this.deliver();
    });
    const response = JSON.parse(line) as ControlResponse;
    if (response.id !== id && response.id !== null) throw new IomapdError('IO', `control channel answered request ${response.id}, expected ${id}`);
    if (!response.ok) throw responseError(response.error);
    return response.result;
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    if (this.buffered.length > MAX_RESPONSE_BYTES) {
      this.socket.destroy();
      this.fail(new IomapdError('IO', `a control response exceeded ${MAX_RESPONSE_BYTES} bytes`));
      return;
    }
    this.deliver();
  }

  private deliver(): void {
    let nl: number;
    while (this.waiter !== null && (nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      this.waiter(line);
    }
  }

  private fail(err: Error): void {
    this.ended ??= err;
    this.waiter?.(this.ended);
  }
}

/** A line as a progress message; null when it is not JSON (the response path reports that). */
function parseOrNull(line: string): Partial<ControlProgress> | null {
  try {
    return JSON.parse(line) as Partial<ControlProgress>;
  } catch {
    return null;
  }
}
