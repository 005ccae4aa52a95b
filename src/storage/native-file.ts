// The file operations Node's fs lacks, from two kept libraries with prebuilt binaries (no compiler
// at install). Nothing else imports them: this one object is the seam, so tests can spy on it or
// make a call fail (vi.spyOn(nativeFile, 'punchHole')).
//
// - fs-native-extensions (holepunch): fcntl(F_OFD_SETLK) locks, held by the open file description,
//   so released when it is closed or the process dies, and refused to a second open of the same
//   file even in this process; fallocate(PUNCH_HOLE | KEEP_SIZE), run on libuv's thread pool.
// - fs-ext-extra-prebuilt: lseek with any whence, so SEEK_DATA (3) and SEEK_HOLE (4) work on
//   Linux. Neither fs-native-extensions nor Node offers them.
import { createRequire } from 'node:module';

interface FsNativeExtensions {
  tryLock(fd: number, opts?: { shared?: boolean }): boolean;
  unlock(fd: number): void;
  trim(fd: number, offset: number, length: number): Promise<void>;
}

interface FsExt {
  seek(fd: number, position: number, whence: number, callback: (err: NodeJS.ErrnoException | null, result?: number) => void): void;
}

const require = createRequire(import.meta.url);
const locks = require('fs-native-extensions') as FsNativeExtensions;
const fsExt = require('fs-ext-extra-prebuilt') as FsExt;

/** Linux's lseek whence values (fs-ext passes them through unchanged). */
const SEEK_DATA = 3;
const SEEK_HOLE = 4;

function seek(fd: number, position: number, whence: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsExt.seek(fd, position, whence, (err, result) => (err ? reject(err) : resolve(result ?? position)));
  });
}

export const nativeFile = {
  /**
   * Takes an OFD lock on the whole file, exclusive unless `shared` (which needs only read
   * access): false when another open file holds a lock that conflicts.
   */
  tryLock(fd: number, shared = false): boolean {
    return locks.tryLock(fd, { shared });
  },

  unlock(fd: number): void {
    locks.unlock(fd);
  },

  /** Deallocates `[offset, offset+length)`, which then reads as zeroes; the size stays. */
  punchHole(fd: number, offset: number, length: number): Promise<void> {
    return locks.trim(fd, offset, length);
  },

  /** The first data at or after `offset`, or null when only a hole follows (ENXIO). */
  async seekData(fd: number, offset: number): Promise<number | null> {
    try {
      return await seek(fd, offset, SEEK_DATA);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENXIO') return null;
      throw err;
    }
  },

  /** The first hole at or after `offset` (end of file counts as one). */
  seekHole(fd: number, offset: number): Promise<number> {
    return seek(fd, offset, SEEK_HOLE);
  },
};
