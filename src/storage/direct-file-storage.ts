// Storage on a regular file opened with O_DIRECT (`--cache=none`): no page cache between the
// daemon and the disk, so the daemon's reads and writes are the disk's. O_DIRECT wants the memory
// address, the file offset and the length aligned (512 bytes on the filesystems the probe accepts),
// so every transfer goes through a page-aligned bounce slot (aligned-pool.ts), at most 1 MiB at a
// time: a copy per transfer, and no cache of any kind (nothing can be stale).
//
// The image store only issues 512-aligned offsets and lengths (journal sectors, 4 KiB superblock
// slots, allocation blocks, 512-byte NBD minimum). Anything else still works: reads read the
// covering sectors; writes read-modify-write them one at a time (counted in `unalignedWrites`,
// which tests expect to stay 0). fdatasync is still needed: O_DIRECT bypasses the page cache, not
// the disk's volatile cache or the file's size.
import { constants, type PathLike } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { IomapdError } from '../util/errors.ts';
import { alignedPool, SLOT_BYTES } from './aligned-pool.ts';
import { FileHandleStorage } from './file-handle-storage.ts';
import { storageError } from './storage.ts';

const ALIGN = 512;

/** What opening with O_DIRECT found: the storage, or why the caller should fall back. */
export type DirectOpen = { readonly ok: true; readonly storage: DirectFileStorage } | { readonly ok: false; readonly reason: string };

export class DirectFileStorage extends FileHandleStorage {
  /** Unaligned writes, done by read-modify-write (one at a time). */
  unalignedWrites = 0;
  private rmw: Promise<void> = Promise.resolve();

  private constructor(fh: FileHandle, name: string) {
    super(fh, name);
  }

  /**
   * Opens `path` with O_DIRECT and probes it: an aligned read of 4 KiB at 0 and of 512 bytes at
   * 512. Any failure (EINVAL from a filesystem without O_DIRECT, a 4 KiB-sector device, no
   * O_DIRECT constant on this platform) is reported, not thrown, so the caller can fall back.
   */
  static async open(path: PathLike, opts: { readOnly?: boolean } = {}): Promise<DirectOpen> {
    const O_DIRECT = constants.O_DIRECT;
    if (O_DIRECT === undefined) return { ok: false, reason: 'this platform has no O_DIRECT' };
    const access = opts.readOnly ? constants.O_RDONLY : constants.O_RDWR;
    let fh: FileHandle;
    try {
      fh = await open(path, access | O_DIRECT);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new IomapdError('NOT_FOUND', `${String(path)} does not exist`, { cause: err });
      return { ok: false, reason: `open with O_DIRECT: ${(err as Error).message}` };
    }
    try {
      await alignedPool().with(async (slot) => {
        await fh.read(slot, 0, 4096, 0);
        await fh.read(slot, 0, ALIGN, ALIGN);
      });
    } catch (err) {
      await fh.close().catch(() => {});
      return { ok: false, reason: `O_DIRECT probe read: ${(err as Error).message}` };
    }
    return { ok: true, storage: new DirectFileStorage(fh, String(path)) };
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    try {
      await alignedPool().with(async (slot) => {
        for (let done = 0; done < buf.length; ) {
          // The aligned span covering the next piece, at most one slot long.
          const at = offset + done;
          const start = Math.floor(at / ALIGN) * ALIGN;
          const end = Math.min(Math.ceil((offset + buf.length) / ALIGN) * ALIGN, start + SLOT_BYTES);
          const got = await this.readAligned(slot, start, end - start);
          const take = Math.min(end, offset + buf.length) - at;
          const avail = Math.max(0, Math.min(take, start + got - at));
          slot.copy(buf, done, at - start, at - start + avail);
          if (avail < take) buf.fill(0, done + avail, done + take); // past the end of the file
          done += take;
        }
      });
    } catch (err) {
      throw storageError(err, `read ${this.name} at ${offset}`);
    }
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    if (offset % ALIGN !== 0 || buf.length % ALIGN !== 0) return this.writeUnaligned(buf, offset);
    try {
      await alignedPool().with(async (slot) => {
        for (let done = 0; done < buf.length; ) {
          const n = Math.min(SLOT_BYTES, buf.length - done);
          buf.copy(slot, 0, done, done + n);
          await this.writeAligned(slot, n, offset + done);
          done += n;
        }
      });
    } catch (err) {
      throw storageError(err, `write ${this.name} at ${offset}`);
    }
  }

  /** Reads up to `length` aligned bytes at `position` into the slot; fewer only at end of file. */
  private async readAligned(slot: Buffer, position: number, length: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(slot, done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
      // A short O_DIRECT read ends at end of file; the next read would start unaligned.
      if (done % ALIGN !== 0) break;
    }
    return done;
  }

  private async writeAligned(slot: Buffer, length: number, position: number): Promise<void> {
    for (let done = 0; done < length; ) {
      const { bytesWritten } = await this.fh.write(slot, done, length - done, position + done);
      if (bytesWritten === 0 || bytesWritten % ALIGN !== 0) throw new IomapdError('IO', `short O_DIRECT write (${bytesWritten} bytes)`);
      done += bytesWritten;
    }
  }

  /** Read-modify-write of the covering sectors, serialised among unaligned writes. */
  private writeUnaligned(buf: Buffer, offset: number): Promise<void> {
    this.unalignedWrites++;
    const run = this.rmw.then(async () => {
      const start = Math.floor(offset / ALIGN) * ALIGN;
      const end = Math.ceil((offset + buf.length) / ALIGN) * ALIGN;
      const whole = Buffer.alloc(end - start);
      await this.read(whole, start);
      buf.copy(whole, offset - start);
      // Now aligned: the ordinary path.
      await this.write(whole, start);
    });
    this.rmw = run.catch(() => {});
    return run;
  }
}
