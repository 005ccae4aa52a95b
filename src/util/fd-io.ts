// pread / pwrite on a file descriptor through node:fs's callback API. On the data path these are
// cheaper than FileHandle.read/write (no FileHandle bookkeeping, no result object, a lighter request
// wrap): about a microsecond less main-thread CPU per call (docs/PERFORMANCE.md). The caller keeps
// the FileHandle open, and so the descriptor valid, for as long as it calls these.
// One object, so tests can spy on (or fail) the calls: vi.spyOn(fdIo, 'pwrite').
import { read, write } from 'node:fs';

export const fdIo = {
  /** Reads up to `length` bytes at `position` into buf[offset...]; resolves with the count read. */
  pread(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return new Promise((resolve, reject) => {
      read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
    });
  },

  /** Writes up to `length` bytes of buf[offset...] at `position`; resolves with the count written. */
  pwrite(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return new Promise((resolve, reject) => {
      write(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
    });
  },
};
