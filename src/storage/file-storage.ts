// Storage on a regular file (or block device) through the page cache. sync is fdatasync. Reads and
// writes go through fd-io.ts, inline on the event loop while this storage's own gates allow.
import { readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { IomapdError } from '../util/errors.ts';
import { fdIo, InlineIoGates, type InlineIoModes } from '../util/fd-io.ts';
import { FileHandleStorage } from './file-handle-storage.ts';
import { storageError } from './storage.ts';

export interface FileStorageOptions {
  /** Modes of this storage's inline I/O gates (default auto). */
  readonly inline?: InlineIoModes;
  /**
   * What a read past the end of the file does: 'zeros' (the Storage rule, default) or 'fail' (IO
   * error, for a device whose size was fixed at open: the file shrank under it).
   */
  readonly pastEnd?: 'zeros' | 'fail';
}

export class FileStorage extends FileHandleStorage {
  /** This storage's inline I/O gates: counters for stats and tests, and their modes. */
  readonly gates: InlineIoGates;
  readonly #failPastEnd: boolean;

  private constructor(fh: FileHandle, name: string, opts: FileStorageOptions) {
    super(fh, name);
    this.gates = new InlineIoGates(opts.inline);
    this.#failPastEnd = opts.pastEnd === 'fail';
  }

  /** Opens an existing file (mode 'r+'), or creates it exclusively when create is set. */
  static async open(path: string, opts: { create?: boolean; readOnly?: boolean } & FileStorageOptions = {}): Promise<FileStorage> {
    const flags = opts.create ? 'wx+' : opts.readOnly ? 'r' : 'r+';
    try {
      return new FileStorage(await open(path, flags), path, opts);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new IomapdError('ALREADY_EXISTS', `${path} already exists`, { cause: err });
      if (code === 'ENOENT') throw new IomapdError('NOT_FOUND', `${path} does not exist`, { cause: err });
      throw storageError(err, `open ${path}`);
    }
  }

  /** A storage over a handle the caller opened (the raw-file device opens files its own way). */
  static over(fh: FileHandle, name: string, opts: FileStorageOptions = {}): FileStorage {
    return new FileStorage(fh, name, opts);
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    let done = 0;
    try {
      while (done < buf.length) {
        const bytesRead = await fdIo.pread(this.gates.reads, this.fh.fd, buf, done, buf.length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      throw storageError(err, `read ${this.name} at ${offset + done}`);
    }
    if (done < buf.length) this.#pastEnd(buf, done, offset);
  }

  readNow(buf: Buffer, offset: number): boolean {
    let done = 0;
    try {
      const first = fdIo.preadNow(this.gates.reads, this.fh.fd, buf, 0, buf.length, offset);
      if (first === null) return false;
      done = first;
      // Admitted once, so the data was in cache a moment ago: finish a short read on this thread.
      while (done < buf.length) {
        const n = readSync(this.fh.fd, buf, done, buf.length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (err) {
      throw storageError(err, `read ${this.name} at ${offset + done}`);
    }
    if (done < buf.length) this.#pastEnd(buf, done, offset);
    return true;
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    let done = 0;
    try {
      while (done < buf.length) {
        const bytesWritten = await fdIo.pwrite(this.gates.writes, this.fh.fd, buf, done, buf.length - done, offset + done);
        if (bytesWritten === 0) throw new IomapdError('IO', `write ${this.name} at ${offset + done}: no progress`);
        done += bytesWritten;
      }
    } catch (err) {
      throw storageError(err, `write ${this.name} at ${offset + done}`);
    }
  }

  /** End of file at `offset + done`: zeros for the rest, or an IO error. */
  #pastEnd(buf: Buffer, done: number, offset: number): void {
    if (this.#failPastEnd) throw new IomapdError('IO', `read ${this.name} at ${offset + done}: end of file (the file shrank)`);
    buf.fill(0, done);
  }
}
