// Storage on a regular file through node:fs/promises. sync is fdatasync.
import { open, type FileHandle } from 'node:fs/promises';
import { IomapdError } from '../util/errors.ts';
import { fdIo } from '../util/fd-io.ts';
import { type Storage, poisonedError, storageError } from './storage.ts';

export class FileStorage implements Storage {
  private readonly fh: FileHandle;
  private poisoned = false;

  private constructor(fh: FileHandle) {
    this.fh = fh;
  }

  /** Opens an existing file (mode 'r+'), or creates it exclusively when create is set. */
  static async open(path: string, opts: { create?: boolean; readOnly?: boolean } = {}): Promise<FileStorage> {
    const flags = opts.create ? 'wx+' : opts.readOnly ? 'r' : 'r+';
    try {
      return new FileStorage(await open(path, flags));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new IomapdError('ALREADY_EXISTS', `${path} already exists`, { cause: err });
      if (code === 'ENOENT') throw new IomapdError('NOT_FOUND', `${path} does not exist`, { cause: err });
      throw storageError(err, `open ${path}`);
    }
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    let done = 0;
    try {
      while (done < buf.length) {
        const bytesRead = await fdIo.pread(this.fh.fd, buf, done, buf.length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      throw storageError(err, 'read');
    }
    if (done < buf.length) buf.fill(0, done);
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    if (this.poisoned) throw poisonedError();
    let done = 0;
    try {
      while (done < buf.length) {
        const bytesWritten = await fdIo.pwrite(this.fh.fd, buf, done, buf.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw storageError(err, 'write');
    }
  }

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
