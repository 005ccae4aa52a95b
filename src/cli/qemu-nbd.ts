// Reading a qcow2 file: qemu-nbd (Debian's qemu-utils) serves it read-only on a private Unix
// socket and the import reads it through the NBD client like any NBD source. qemu is the one
// complete qcow2 reader (compressed clusters, backing chains, zero clusters, external data files),
// and its base:allocation answers tell holes and zero clusters from data, so holes stay holes
// without iomapd parsing qcow2 itself. (`qemu-img map` plus reading the file directly would see
// only plain clusters: compressed ones and backing files would need a qcow2 reader of our own.)
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IomapdError } from '../util/errors.ts';

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // "QFI\xfb"
const START_TIMEOUT_MS = 15_000;

/** Whether the file starts with qcow2's magic. */
export async function isQcow2(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return bytesRead === 4 && head.equals(QCOW2_MAGIC);
  } finally {
    await fh.close();
  }
}

export interface QemuNbd {
  /** The private socket qemu-nbd listens on (export name ""). */
  readonly socket: string;
  /** Why qemu-nbd exited, if it exits within `ms` (it may create its socket before it fails). */
  exitError(ms: number): Promise<IomapdError | null>;
  stop(): Promise<void>;
}

/** Starts `qemu-nbd --read-only` on `path` and waits until its socket exists. */
export async function startQemuNbd(path: string, format: string): Promise<QemuNbd> {
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-qemu-nbd-'));
  const socket = join(dir, 'nbd.sock');
  let stderr = '';
  let child: ChildProcess;
  try {
    // Not --persistent: qemu-nbd exits when our one connection closes, even if this process dies.
    child = spawn('qemu-nbd', ['--read-only', `--format=${format}`, `--socket=${socket}`, path], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  // Settles once the child is gone ('exit' may not follow an 'error' such as ENOENT).
  const gone = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  const exited = new Promise<IomapdError>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      resolve(
        err.code === 'ENOENT'
          ? new IomapdError('NOT_SUPPORTED', `reading ${format} needs qemu-nbd (Debian package qemu-utils), which is not installed`)
          : new IomapdError('IO', `qemu-nbd failed to start: ${err.message}`),
      ),
    );
    child.once('exit', (code, signal) => resolve(new IomapdError('BAD_ARGUMENT', `qemu-nbd could not open ${path} as ${format} (exit ${code ?? signal}): ${stderr.trim()}`)));
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await gone;
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  let failure: IomapdError | null = null;
  void exited.then((e) => (failure = e));
  while (!existsSync(socket)) {
    if (failure !== null || Date.now() > deadline) {
      await stop();
      throw failure ?? new IomapdError('IO', `qemu-nbd did not open its socket within ${START_TIMEOUT_MS / 1000} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const exitError = (ms: number) => Promise.race([exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), ms).unref())]);
  return { socket, exitError, stop };
}
