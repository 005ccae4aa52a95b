// The servers under test, one at a time: iomapd serving an image store volume, iomapd serving a raw
// file, nbdkit's file plugin and qemu-nbd, each on a Unix socket or loopback TCP. Every server is
// started fresh for each job and stopped after it, so each job's CPU time and peak RSS are its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { ROOT, TLS_SERVERS, type ServerName, type Transport } from './config.ts';
import { sleep } from './system.ts';

/** The same data, in the two forms the servers take. */
export interface Dataset {
  readonly raw: string;
  readonly image: string;
}

export interface Running {
  readonly name: ServerName;
  readonly pid: number;
  readonly uri: string;
  /** The file whose pages this server reads (for the page cache). */
  readonly file: string;
  stop(): Promise<void>;
}

/**
 * Whether the file still starts with the image superblock magic. `iomapd serve` now refuses a file
 * without it unless --raw is given, but an older checkout (BENCH_IOMAPD, the baseline of a
 * comparison) serves it as a raw disk, so a damaged image would silently be benchmarked (and
 * written) as raw.
 */
export async function isImage(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(8);
    await fh.read(buf, 0, 8, 0);
    return buf.toString('latin1') === 'IOMAPDSB';
  } finally {
    await fh.close();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The iomapd launcher; BENCH_IOMAPD points at another checkout's (before/after comparisons). */
const IOMAPD = process.env.BENCH_IOMAPD ?? join(ROOT, 'scripts/iomapd');

function command(name: ServerName, transport: Transport, data: Dataset, sock: string, port: number, iomapd: string, tlsDir: string | undefined): { cmd: string; args: string[]; file: string } {
  const listen = (unix: string[], tcp: string[]) => (transport === 'unix' ? unix : tcp);
  const certs = (): string => {
    if (tlsDir === undefined) throw new Error(`${name} needs StartOptions.tlsDir (scripts/bench/tls-certificates.ts)`);
    return tlsDir;
  };
  switch (name) {
    case 'iomapd-image':
      return {
        cmd: iomapd,
        args: ['serve', data.image, ...listen(['--socket', sock], ['--listen', `127.0.0.1:${port}`]), '--log-level', 'warn'],
        file: data.image,
      };
    case 'iomapd-image-tls':
      return {
        cmd: iomapd,
        args: ['serve', data.image, ...listen(['--socket', sock], ['--listen', `127.0.0.1:${port}`]), '--tls', 'require', '--tls-certificates', certs(), '--log-level', 'warn'],
        file: data.image,
      };
    case 'nbdkit-tls':
      return {
        cmd: 'nbdkit',
        args: ['-f', '--exit-with-parent', '--tls=require', `--tls-certificates=${certs()}`, ...listen(['-U', sock], ['-i', '127.0.0.1', '-p', String(port)]), 'file', data.raw],
        file: data.raw,
      };
    case 'iomapd-raw':
      return {
        cmd: iomapd,
        args: ['serve', '--raw', data.raw, ...listen(['--socket', sock], ['--listen', `127.0.0.1:${port}`]), '--log-level', 'warn'],
        file: data.raw,
      };
    case 'nbdkit':
      // Defaults otherwise: the parallel thread model with 16 threads, page-cache I/O.
      return {
        cmd: 'nbdkit',
        args: ['-f', '--exit-with-parent', ...listen(['-U', sock], ['-i', '127.0.0.1', '-p', String(port)]), 'file', data.raw],
        file: data.raw,
      };
    case 'qemu-nbd':
      // Defaults otherwise: cache=writeback, aio=threads. -t: keep serving after a client leaves;
      // -e 8: allow more than one client at a time (the two-connection job).
      return {
        cmd: 'qemu-nbd',
        args: ['-f', 'raw', '-t', '-e', '8', ...listen(['-k', sock], ['-b', '127.0.0.1', '-p', String(port)]), data.raw],
        file: data.raw,
      };
  }
}

async function waitConnectable(target: { path: string } | { host: string; port: number }, child: ChildProcess, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(target as never);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error('server did not start listening in time');
}

export interface StartOptions {
  readonly dir: string;
  readonly logDir: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Another iomapd launcher than BENCH_IOMAPD / scripts/iomapd. */
  readonly iomapd?: string;
  /** --tls-certificates DIR of the TLS servers (and the clients' CA). */
  readonly tlsDir?: string;
}

let started = 0;

export async function startServer(name: ServerName, transport: Transport, data: Dataset, opts: StartOptions): Promise<Running> {
  const sock = join(opts.dir, `${name}.sock`);
  await rm(sock, { force: true });
  const port = transport === 'tcp' ? await freePort() : 0;
  const { cmd, args, file } = command(name, transport, data, sock, port, opts.iomapd ?? IOMAPD, opts.tlsDir);
  if ((name === 'iomapd-image' || name === 'iomapd-image-tls') && !(await isImage(data.image))) throw new Error(`${data.image} is no longer an iomapd image (superblock magic gone)`);
  const log = createWriteStream(join(opts.logDir, `${String(++started).padStart(4, '0')}-${name}-${transport}.log`));
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  // Two streams into one log: neither may end it (the other may still write); it ends when both closed.
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  child.once('close', () => log.end());
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timeout = sleep(30_000).then(() => 'timeout');
    if ((await Promise.race([exited.then(() => 'exited'), timeout])) === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
  };
  try {
    await waitConnectable(transport === 'unix' ? { path: sock } : { host: '127.0.0.1', port }, child, 30_000);
  } catch (err) {
    await kill();
    throw new Error(`${name} over ${transport}: ${(err as Error).message} (log in ${opts.logDir})`);
  }
  // TLS clients skip verifying the server's certificate (tls-verify-peer=false): fio's libnbd
  // refuses tls-certificates in a URI (local file access), and as root it would read
  // /etc/pki/libnbd, which the bench leaves alone. Verification costs once per connection.
  const uri = TLS_SERVERS.includes(name)
    ? transport === 'unix'
      ? `nbds+unix:///?socket=${sock}&tls-verify-peer=false`
      : `nbds://127.0.0.1:${port}/?tls-verify-peer=false`
    : transport === 'unix'
      ? `nbd+unix:///?socket=${sock}`
      : `nbd://127.0.0.1:${port}/`;
  return {
    name,
    pid: child.pid!,
    uri,
    file,
    async stop() {
      await kill();
      await rm(sock, { force: true });
    },
  };
}
