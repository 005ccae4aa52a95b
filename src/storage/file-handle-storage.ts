// What every file-backed Storage shares: the open FileHandle, fdatasync with poisoning (after a
// failed sync the outcome is unknown, so writes are refused rather than guessed), size, resize,
// close. Subclasses say how bytes are read and written (buffered, or through O_DIRECT bounces).
import type { FileHandle } from 'node:fs/promises';
import { type Storage, poisonedError, storageError } from './storage.ts';

export abstract class FileHandleStorage implements Storage {
  protected readonly fh: FileHandle;
  protected poisoned = false;

  protected constructor(fh: FileHandle) {
    this.fh = fh;
  }

  abstract read(buf: Buffer, offset: number): Promise<void>;
  abstract write(buf: Buffer, offset: number): Promise<void>;

  async sync(): Promise<void> {
    if (this.poisoned) throw poisonedError();
    try {
      await this.fh.datasync();
    } catch (err) {
      this.poisoned = true;
      throw storageError(err, 'fdatasync');
    }
  }

  async size(): Promise<number> {
    try {
      return (await this.fh.stat()).size;
    } catch (err) {
      throw storageError(err, 'stat');
    }
  }

  async resize(size: number): Promise<void> {
    if (this.poisoned) throw poisonedError();
    try {
      await this.fh.truncate(size);
    } catch (err) {
      throw storageError(err, 'truncate');
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
