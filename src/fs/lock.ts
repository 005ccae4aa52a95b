// The image lock: IMAGE.lock created exclusively, holding the owner's pid. Node has no flock, so a
// lock whose pid is no longer alive is stale and is taken over. Opening an image twice in the same
// process is refused too (the pid is alive: ours).
import { open, readFile, unlink } from 'node:fs/promises';
import { IomapdError } from '../util/errors.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class ImageLock {
  readonly path: string;
  private released = false;

  private constructor(path: string) {
    this.path = path;
  }

  static async acquire(imagePath: string): Promise<ImageLock> {
    const path = `${imagePath}.lock`;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(path, 'wx');
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        return new ImageLock(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new IomapdError('IO', `cannot create lock ${path}: ${(err as Error).message}`, { cause: err });
        }
      }
      let pid = NaN;
      try {
        pid = Number.parseInt(await readFile(path, 'utf8'), 10);
      } catch {
        // vanished between open and read: retry
      }
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
        throw new IomapdError('LOCKED', `${imagePath} is open in process ${pid}`);
      }
      await unlink(path).catch(() => {});
    }
    throw new IomapdError('LOCKED', `${imagePath} is locked (${path})`);
  }

  /** The live process holding `imagePath`'s lock, or null (no lock, or a stale one). */
  static async holder(imagePath: string): Promise<number | null> {
    let pid = NaN;
    try {
      pid = Number.parseInt(await readFile(`${imagePath}.lock`, 'utf8'), 10);
    } catch {
      return null;
    }
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await unlink(this.path).catch(() => {});
  }
}
