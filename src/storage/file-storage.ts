// Storage on a regular file through node:fs/promises. sync is fdatasync.
import { readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { IomapdError } from '../util/errors.ts';
import { fdIo } from '../util/fd-io.ts';
import { FileHandleStorage } from './file-handle-storage.ts';
import { poisonedError, storageError } from './storage.ts';

export class FileStorage extends FileHandleStorage {
  private constructor(fh: FileHandle) {
    super(fh);
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

  readNow(buf: Buffer, offset: number): boolean {
    let done = 0;
    try {
      const first = fdIo.preadNow(this.fh.fd, buf, 0, buf.length, offset);
      if (first === null) return false;
      done = first;
      // A short read (end of file, or a signal): finish on this thread, as read() would.
      while (done < buf.length) {
        const n = readSync(this.fh.fd, buf, done, buf.length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (err) {
      throw storageError(err, 'read');
    }
    if (done < buf.length) buf.fill(0, done);
    return true;
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
}
