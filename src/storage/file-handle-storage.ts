// What every file-backed Storage shares: the open FileHandle, fdatasync, size, resize, close, and
// the native operations on its descriptor (hole punching, SEEK_DATA / SEEK_HOLE). Subclasses say
// how bytes are read and written (buffered, or through O_DIRECT bounces). The poison latch after a
// failed fdatasync is not here: PoisonLatch wraps every backend (poison-latch.ts).
import type { FileHandle } from 'node:fs/promises';
import { nativeFile } from './native-file.ts';
import { type Storage, type StorageExtent, storageError } from './storage.ts';

/** lseek's answers for a filesystem (or file type) that cannot tell holes from data. */
const NO_SEEK_DATA = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP']);

export abstract class FileHandleStorage implements Storage {
  protected readonly fh: FileHandle;
  /** The path, for error messages. */
  readonly name: string;

  protected constructor(fh: FileHandle, name: string) {
    this.fh = fh;
    this.name = name;
  }

  abstract read(buf: Buffer, offset: number): Promise<void>;
  abstract write(buf: Buffer, offset: number): Promise<void>;

  async sync(): Promise<void> {
    try {
      await this.fh.datasync();
    } catch (err) {
      throw storageError(err, `fdatasync ${this.name}`);
    }
  }

  async size(): Promise<number> {
    try {
      return (await this.fh.stat()).size;
    } catch (err) {
      throw storageError(err, `stat ${this.name}`);
    }
  }

  async resize(size: number): Promise<void> {
    try {
      await this.fh.truncate(size);
    } catch (err) {
      throw storageError(err, `truncate ${this.name}`);
    }
  }

  async punchHole(offset: number, length: number): Promise<void> {
    try {
      await nativeFile.punchHole(this.fh.fd, offset, length);
    } catch (err) {
      throw storageError(err, `punch a hole in ${this.name} at ${offset}`);
    }
  }

  /**
   * Two lseeks per data run (SEEK_DATA, then SEEK_HOLE) and at most `max` runs, so a call costs a
   * bounded number of system calls however large the range or fragmented the file.
   */
  async extents(offset: number, length: number, max: number): Promise<StorageExtent[] | null> {
    const end = offset + length;
    const out: StorageExtent[] = [];
    let at = offset;
    try {
      for (let steps = 0; at < end && out.length < max && steps < 2 * max; steps++) {
        const data = await nativeFile.seekData(this.fh.fd, at);
        if (data === null || data >= end) {
          out.push({ length: end - at, data: false });
          break;
        }
        if (data > at) {
          out.push({ length: data - at, data: false });
          at = data;
          continue;
        }
        const hole = Math.min(await nativeFile.seekHole(this.fh.fd, at), end);
        if (hole <= at) continue; // a hole appeared at `at` since SEEK_DATA: look again
        out.push({ length: hole - at, data: true });
        at = hole;
      }
    } catch (err) {
      if (NO_SEEK_DATA.has((err as NodeJS.ErrnoException).code ?? '')) return null;
      throw storageError(err, `seek ${this.name} at ${at}`);
    }
    return out.length > 0 ? out : [{ length: end - at, data: true }];
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
