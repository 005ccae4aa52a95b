// The image lock: an exclusive OFD lock (fcntl F_OFD_SETLK, through src/storage/native-file.ts) on
// IMAGE.lock, held by the open file for as long as the image is open. The kernel drops it when the
// file is closed or the process dies, so a crashed daemon, or a recycled pid, never blocks the next
// start. Opening an image twice in one process is refused too (each open is its own file
// description). The file stays; it holds the owner's pid, which `holder()` reports only while the
// lock is really held (the control channel uses it to find the daemon).
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { nativeFile } from '../storage/native-file.ts';
import { IomapdError } from '../util/errors.ts';

const LOCK_FILE_MODE = 0o644;
/** holder() probes with a brief shared lock; a start that meets one tries again this often. */
const LOCK_ATTEMPTS = 5;
const LOCK_RETRY_MS = 20;

function lockPath(imagePath: string): string {
  return `${imagePath}.lock`;
}

/** The pid written in the lock file, or null when there is none (yet). */
async function recordedPid(fh: FileHandle): Promise<number | null> {
  const buf = Buffer.alloc(32);
  const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
  const pid = Number.parseInt(buf.toString('utf8', 0, bytesRead), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** Takes the exclusive lock, trying again briefly in case a holder() probe holds it for a moment. */
async function tryLockSoon(fd: number): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    if (nativeFile.tryLock(fd)) return true;
    if (attempt === LOCK_ATTEMPTS) return false;
    await new Promise((r) => setTimeout(r, LOCK_RETRY_MS));
  }
}

export class ImageLock {
  readonly path: string;
  readonly #fh: FileHandle;
  #released = false;

  private constructor(path: string, fh: FileHandle) {
    this.path = path;
    this.#fh = fh;
  }

  static async acquire(imagePath: string): Promise<ImageLock> {
    const path = lockPath(imagePath);
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDWR | constants.O_CREAT, LOCK_FILE_MODE);
    } catch (err) {
      throw new IomapdError('IO', `cannot create lock ${path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      if (!(await tryLockSoon(fh.fd))) {
        const pid = await recordedPid(fh).catch(() => null);
        throw new IomapdError('LOCKED', pid === null ? `${imagePath} is locked (${path})` : `${imagePath} is open in process ${pid}`);
      }
      await fh.truncate(0);
      await fh.write(`${process.pid}\n`, 0);
      return new ImageLock(path, fh);
    } catch (err) {
      await fh.close().catch(() => {});
      if (err instanceof IomapdError) throw err;
      throw new IomapdError('IO', `cannot take lock ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * The process holding `imagePath`'s lock, or null (no lock file, or nobody holds the lock). Asks
   * with a shared lock, which needs only read access and is dropped at once.
   */
  static async holder(imagePath: string): Promise<number | null> {
    let fh: FileHandle;
    try {
      fh = await open(lockPath(imagePath), 'r');
    } catch {
      return null;
    }
    try {
      if (nativeFile.tryLock(fh.fd, true)) return null; // closing drops the probe's lock
      return await recordedPid(fh);
    } catch {
      return null;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    // Forget our pid while still holding the lock, so nobody reads it as the next holder's.
    await this.#fh.truncate(0).catch(() => {});
    await this.#fh.close().catch(() => {});
  }
}
