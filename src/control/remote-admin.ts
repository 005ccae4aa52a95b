// ImageAdmin through a running daemon's control channel: each call is one request line and one
// response line, one at a time, each bounded by a timeout.
import { connect, type Socket } from 'node:net';
import type { GcReport } from '../fs/object/object-gc.ts';
import type { VolumeInfo } from '../fs/volumes.ts';
import type { ExtentInfo } from '../fs/mapping.ts';
import { IomapdError } from '../util/errors.ts';
import type { CreateVolumeOptions, DaemonStats, ImageAdmin, ImageInfo, ReloadResult } from './admin.ts';
import { encodeLine, responseError, type ControlResponse } from './wire.ts';

const CONNECT_TIMEOUT_MS = 5_000;
/** Generous: a snapshot waits for the volume's in-flight writes to drain. */
const REQUEST_TIMEOUT_MS = 120_000;
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

  private async request(op: string, args: Record<string, unknown>): Promise<unknown> {
    if (this.waiter !== null) throw new Error('RemoteAdmin: one request at a time');
    const id = this.nextId++;
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new IomapdError('IO', `the daemon did not answer "${op}" within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.waiter = (got) => {
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
    const nl = this.buffered.indexOf('\n');
    if (nl < 0 || this.waiter === null) return;
    const line = this.buffered.slice(0, nl);
    this.buffered = this.buffered.slice(nl + 1);
    this.waiter(line);
  }

  private fail(err: Error): void {
    this.ended ??= err;
    this.waiter?.(this.ended);
  }
}
