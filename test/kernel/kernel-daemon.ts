// The daemon a kernel scenario attaches: iomapd on a fresh 1 GiB image (a file, a raw file, or an
// image in a bucket of the local Ceph) on a free loopback port, started and stopped through
// test/support/daemon.ts, and the iomapd CLI calls the scenarios make on its image (info, map,
// stats, snapshot, clone, check). After each scenario the daemon must exit 0 on SIGTERM, and an
// image must then pass `iomapd check`.
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openImageFile } from '../../src/fs/image-file.ts';
import type { CephEnv } from '../support/ceph.ts';
import { Daemon, runCli, type Exit, type LogEntry } from '../support/daemon.ts';

export const IMAGE_SIZE = '1G';
const DAEMON_STOP_MS = 15_000;
/** Lines of console and daemon log put into a failure message. */
const TAIL_LINES = 120;

/** The last lines of a text, for a failure message. */
export function tail(text: string, lines = TAIL_LINES): string {
  const all = text.split('\n');
  return all.length <= lines ? text : `[... ${all.length - lines} lines cut ...]\n${all.slice(-lines).join('\n')}`;
}

/** A command line of iomapd, for messages. */
function commandLine(args: readonly string[]): string {
  return `iomapd ${args.map((a) => (a === '' || /\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`;
}

/** Runs `iomapd ARGS` (bounded) and returns its stdout; throws with its output unless it exits 0. */
export async function cli(args: readonly string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await runCli(args, { env, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`$ ${commandLine(args)}\nexited ${r.code}\n${tail(`${r.stdout}${r.stderr}`, 40)}`);
  return r.stdout;
}

/** Commands and flags one connection received, as iomapd logs them when it closes. */
export type RequestCounts = Record<string, number>;

export interface ConnectionRecord {
  conn: number;
  /** The export it reached as iomapd logs it: the volume name ("default" for export ""); "" on a raw file. */
  export: string;
  reason: string;
  requests: RequestCounts;
}

/** Sums the request counts of several connections. */
export function totals(connections: readonly ConnectionRecord[]): RequestCounts {
  const sum: RequestCounts = {};
  for (const c of connections) for (const [k, v] of Object.entries(c.requests)) sum[k] = (sum[k] ?? 0) + v;
  return sum;
}

/**
 * What a scenario serves: `image`, a fresh iomapd image (`iomapd create --size 1G`, one volume
 * `default`, the default export) served with `iomapd serve IMAGE`; `raw`, a fresh sparse raw file
 * served with `iomapd serve FILE --raw`; `s3`, a fresh image at s3://BUCKET/kernel-NAME in the
 * local Ceph (KernelDaemonOptions.store), served with a cache directory.
 */
export type Backend = 'image' | 'raw' | 's3';

/** Stands for the image's path in KernelDaemonOptions.setup commands. */
export const IMAGE = '{IMAGE}';

export interface KernelDaemonOptions {
  /** iomapd commands run on the fresh image before serve (IMAGE stands for its path). */
  setup?: ReadonlyArray<readonly string[]>;
  /** Extra `serve` options (TLS, say). */
  serveArgs?: readonly string[];
  /** For the `s3` backend: the local Ceph's client environment and a bucket the test owns. */
  store?: { env: CephEnv; bucket: string };
}

/** `iomapd info --json`. */
export interface ImageInfo {
  blockSize: number;
  dataBlocks: number;
  freeBlocks: number;
  pendingFreeBlocks: number;
  reservedBlocks: number;
  uncommittedOps: number;
  volumes: { name: string; size: number; snapshot: boolean; extents: number; allocatedBytes: number }[];
}

/** One row of `iomapd map --json`. */
export interface MapExtent {
  offset: number;
  length: number;
  type: 'hole' | 'unwritten' | 'mapped' | 'inline';
  physical: number;
  shared: boolean;
}

/** `iomapd stats --json` (counters per export). */
export interface DaemonStats {
  exports: { name: string; connections: number; counters: Record<string, number> }[];
}

/** Reads bytes of what a daemon served, on the host, after it stopped. */
export interface HostReader {
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export class KernelDaemon {
  readonly name: string;
  readonly backend: Backend;
  /** What it serves: the image file, the raw file, or the s3:// image. */
  readonly image: string;
  /** The environment of the daemon and of every CLI call on its image (the store's settings for s3). */
  readonly env: NodeJS.ProcessEnv;
  /** Its temporary directory, holding the image. */
  private readonly dir: string;
  private readonly daemon: Daemon;
  /** The "negotiated" and "connection closed" log lines, whole and in order. */
  private readonly connectionLog: readonly LogEntry[];
  private stopping: Promise<void> | undefined;
  private check: string | null = null;

  private constructor(name: string, backend: Backend, image: string, env: NodeJS.ProcessEnv, dir: string, daemon: Daemon, connectionLog: readonly LogEntry[]) {
    this.name = name;
    this.backend = backend;
    this.image = image;
    this.env = env;
    this.dir = dir;
    this.daemon = daemon;
    this.connectionLog = connectionLog;
  }

  /**
   * Starts iomapd on a fresh 1 GiB image (or raw file) listening on a free loopback port. An image
   * is made with `iomapd create IMAGE --size 1G` and served whole (`default` is also export "").
   */
  static async start(name: string, backend: Backend, opts: KernelDaemonOptions = {}): Promise<KernelDaemon> {
    if ((backend === 's3') !== (opts.store !== undefined)) throw new Error(`KernelDaemon ${name}: the s3 backend, and only it, needs options.store`);
    const dir = await mkdtemp(join(tmpdir(), 'iomapd-kernel-'));
    const image = opts.store ? `s3://${opts.store.bucket}/kernel-${name}` : join(dir, backend === 'image' ? 'disk.iomapd' : 'disk.img');
    // A private run directory: the control socket of a bucket image lives there, not beside a file.
    const env: NodeJS.ProcessEnv = opts.store ? { ...process.env, ...opts.store.env, IOMAPD_RUN_DIR: dir } : process.env;
    const connectionLog: LogEntry[] = [];
    try {
      if (backend !== 'raw') await cli(['create', image, '--size', IMAGE_SIZE], env);
      for (const command of opts.setup ?? []) await cli(command.map((a) => (a === IMAGE ? image : a)), env);
      // --raw: the host side reads the guest's patterns back from the file at the same offsets.
      const backendArgs = backend === 'raw' ? ['--raw', '--size', IMAGE_SIZE] : backend === 's3' ? ['--cache-dir', join(dir, 'cache')] : [];
      const args = [image, ...backendArgs, '--listen', '127.0.0.1:0', '--log-level', 'info', ...(opts.serveArgs ?? [])];
      const daemon = await Daemon.start(args, {
        env,
        onLog: (e) => {
          if (e.msg === 'negotiated' || e.msg === 'connection closed') connectionLog.push(e);
        },
      });
      return new KernelDaemon(name, backend, image, env, dir, daemon, connectionLog);
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  get port(): number {
    return this.daemon.port;
  }

  /** What it printed (the tail of stdout, then stderr). */
  output(): string {
    return this.daemon.output();
  }

  /** Ids of the connections negotiated so far (listings and aborted handshakes are not). */
  negotiated(): number[] {
    return this.connectionLog.filter((l) => l.msg === 'negotiated' && typeof l.conn === 'number').map((l) => l.conn as number);
  }

  /** Negotiated connections closed so far, from the "connection closed" log lines. */
  closed(): ConnectionRecord[] {
    const ids = new Set(this.negotiated());
    return this.connectionLog
      .filter((l) => l.msg === 'connection closed' && typeof l.conn === 'number' && ids.has(l.conn))
      .map((l) => ({
        conn: l.conn as number,
        export: typeof l.export === 'string' ? l.export : '',
        reason: typeof l.reason === 'string' ? l.reason : '',
        requests: (typeof l.requests === 'object' && l.requests !== null ? l.requests : {}) as RequestCounts,
      }));
  }

  /** Non-null once the process has exited. */
  exited(): Exit | null {
    return this.daemon.exited;
  }

  /** `iomapd ARGS` in this daemon's environment; its stdout, or throws unless it exits 0. */
  cli(args: readonly string[]): Promise<string> {
    return cli(args, this.env);
  }

  /** `iomapd info IMAGE --json` (image only; through the control channel while it runs). */
  async info(): Promise<ImageInfo> {
    this.requireImage('info');
    return JSON.parse(await this.cli(['info', this.image, '--json'])) as ImageInfo;
  }

  /** `iomapd map IMAGE VOLUME --json` (image only). */
  async map(volume: string): Promise<MapExtent[]> {
    this.requireImage('map');
    return JSON.parse(await this.cli(['map', this.image, volume, '--json'])) as MapExtent[];
  }

  /** `iomapd stats IMAGE --json` (image only, while it runs). */
  async stats(): Promise<DaemonStats> {
    this.requireImage('stats');
    return JSON.parse(await this.cli(['stats', this.image, '--json'])) as DaemonStats;
  }

  /**
   * SIGTERM, require exit code 0; for an image, then `iomapd check IMAGE` on the host, which must
   * report it clean. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= this.stopAndCheck();
    return this.stopping;
  }

  /** `iomapd check --json` output of the stopped image (null for raw, or before stop). */
  checkReport(): string | null {
    return this.check;
  }

  /**
   * A volume's bytes read on the host without iomapd: the raw file, or (after stop) the image's
   * volume (`default` unless named) through its own extent map, holes and unwritten as zeros.
   */
  async hostReader(volume = 'default'): Promise<HostReader> {
    const image = this.image;
    if (this.backend === 'raw') {
      const fh = await open(image, 'r');
      return {
        async read(offset, length) {
          const buf = Buffer.alloc(length);
          const { bytesRead } = await fh.read(buf, 0, length, offset);
          if (bytesRead !== length) throw new Error(`short read of ${image}: ${bytesRead} of ${length} bytes at ${offset}`);
          return buf;
        },
        close: () => fh.close(),
      };
    }
    if (this.backend === 's3') throw new Error(`hostReader: ${this.name} serves a bucket image; read it through a daemon`);
    if (this.exited() === null) throw new Error(`hostReader: stop ${this.name} first (the daemon holds the image)`);
    const store = await openImageFile(image, { readOnly: true });
    return {
      async read(offset, length) {
        const buf = Buffer.alloc(length);
        for (const e of store.extents(volume, offset, offset + length)) {
          const s = Math.max(e.offset, offset);
          const t = Math.min(e.offset + e.length, offset + length);
          if (s >= t) continue;
          if (e.type === 'mapped') await store.readData(e.physical + (s - e.offset), buf.subarray(s - offset, t - offset));
          else if (e.type === 'inline') throw new Error(`hostReader: ${volume} is inline`);
          // hole and unwritten read as zeros: buf is zero-filled.
        }
        return buf;
      },
      close: () => store.close(),
    };
  }

  /** Removes the files (the process is killed first if it still runs). */
  async dispose(): Promise<void> {
    await this.daemon.kill().catch(() => {});
    await rm(this.dir, { recursive: true, force: true });
  }

  private requireImage(what: string): void {
    if (this.backend === 'raw') throw new Error(`${what} needs an image, and ${this.name} serves a raw file`);
  }

  private async stopAndCheck(): Promise<void> {
    const died = this.exited();
    if (died !== null) {
      throw new Error(`iomapd (${this.name}) died during the test (code ${died.code}, signal ${died.signal})\n${this.daemon.describe()}`);
    }
    let r: Exit;
    try {
      r = await this.daemon.stop(DAEMON_STOP_MS);
    } catch (e) {
      throw new Error(`iomapd (${this.name}) after SIGTERM: ${(e as Error).message}`);
    }
    if (r.code !== 0) throw new Error(`iomapd (${this.name}) exited with code ${r.code} (signal ${r.signal}) after SIGTERM\n${tail(this.output())}`);
    if (this.backend === 'raw') return;
    // The image at rest must hold every invariant: no leaked or doubly used block; in a bucket,
    // every reference resolves.
    const c = await runCli(['check', this.image, '--json'], { env: this.env, timeoutMs: 120_000 });
    this.check = c.stdout.trim();
    let errors: unknown = ['(no JSON report)'];
    try {
      errors = (JSON.parse(this.check) as { errors?: unknown }).errors;
    } catch {
      // kept as "(no JSON report)"
    }
    if (c.code !== 0 || !Array.isArray(errors) || errors.length > 0) {
      throw new Error(`iomapd check ${this.image} (${this.name}) is not clean (exit ${c.code}):\n${tail(`${c.stdout}${c.stderr}`, 40)}`);
    }
  }
}

/**
 * Runs body against a fresh daemon, then stops it (a failed stop or an unclean image check fails
 * the test too) and removes its files. Body may stop it itself to look at the stopped image.
 */
export async function withDaemon<T>(name: string, backend: Backend, body: (d: KernelDaemon) => Promise<T>, opts: KernelDaemonOptions = {}): Promise<T> {
  const daemon = await KernelDaemon.start(name, backend, opts);
  try {
    let result: T;
    try {
      result = await body(daemon);
    } catch (e) {
      try {
        await daemon.stop();
      } catch (stopError) {
        (e as Error).message += `\n(also: ${(stopError as Error).message})`;
      }
      throw e;
    }
    await daemon.stop();
    const report = daemon.checkReport();
    if (report !== null && backend === 's3') {
      const r = JSON.parse(report) as { objects: number; bytes: number; liveBytes: number; leaked: string[] };
      console.log(`[kernel] ${name}: iomapd check clean after stop: ${r.objects} objects, ${r.bytes} bytes stored, ${r.liveBytes} bytes live, ${r.leaked.length} leaked`);
    } else if (report !== null) {
      const r = JSON.parse(report) as { volumes: number; extents: number; usedBlocks: number; freeBlocks: number };
      console.log(`[kernel] ${name}: iomapd check clean after stop: ${r.volumes} volumes, ${r.extents} extents, ${r.usedBlocks} used and ${r.freeBlocks} free blocks`);
    }
    return result;
  } finally {
    await daemon.dispose();
  }
}
