// pread / pwrite on a file descriptor through node:fs's callback API. On the data path these are
// cheaper than FileHandle.read/write (no FileHandle bookkeeping, no result object, a lighter request
// wrap): about a microsecond less main-thread CPU per call (docs/PERFORMANCE.md). The caller keeps
// the FileHandle open, and so the descriptor valid, for as long as it calls these.
// Reads and writes the page cache can take at once run inline on the event loop when the caller's
// gate allows (src/util/inline-io.ts); everything else goes through libuv's thread pool. Each file
// storage owns its gates (InlineIoGates), so nothing here is process-wide state.
// One object, so tests can spy on (or fail) the calls: vi.spyOn(fdIo, 'pwrite').
import { read, readSync, write, writeSync } from 'node:fs';
import { hrtime, resourceUsage } from 'node:process';
import { InlineIoGate, writeInlineLimit, type InlineIoMode } from './inline-io.ts';

/** The modes a storage's gates start in (`iomapd serve --inline-reads / --inline-writes`). */
export interface InlineIoModes {
  readonly reads?: InlineIoMode;
  readonly writes?: InlineIoMode;
}

/** One storage's pair of gates: reads judged by the block input count, writes by time alone (and larger writes may run inline). */
export class InlineIoGates {
  readonly reads: InlineIoGate;
  readonly writes: InlineIoGate;

  constructor(modes: InlineIoModes = {}) {
    this.reads = new InlineIoGate(modes.reads ?? 'auto', () => resourceUsage().fsRead);
    this.writes = new InlineIoGate(modes.writes ?? 'auto', null, { maxInlineBytes: writeInlineLimit });
  }
}

type SyncIo = (fd: number, buf: Buffer, offset: number, length: number, position: number) => number;

/** Runs `io` on this thread if `gate` admits it (the count moved), else null; times it for the gate. */
function gated(gate: InlineIoGate, io: SyncIo, fd: number, buf: Buffer, offset: number, length: number, position: number): number | null {
  const start = hrtime.bigint();
  if (!gate.admit(length, start)) return null;
  const n = io(fd, buf, offset, length, position);
  const end = hrtime.bigint();
  gate.record(length, end - start, end);
  return n;
}

export const fdIo = {
  /** Reads up to `length` bytes at `position` into buf[offset...]; resolves with the count read. */
  pread(gate: InlineIoGate, fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    let n: number | null;
    try {
      n = fdIo.preadNow(gate, fd, buf, offset, length, position);
    } catch (err) {
      return Promise.reject(err);
    }
    if (n !== null) return Promise.resolve(n);
    return new Promise((resolve, reject) => {
      read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
    });
  },

  /**
   * Reads now, on this thread, when the gate admits it: the count read, or null when the read must
   * go through pread() instead. Throws what readSync throws.
   */
  preadNow(gate: InlineIoGate, fd: number, buf: Buffer, offset: number, length: number, position: number): number | null {
    return gated(gate, readSync, fd, buf, offset, length, position);
  },

  /** Writes up to `length` bytes of buf[offset...] at `position`; resolves with the count written. */
  pwrite(gate: InlineIoGate, fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    let n: number | null;
    try {
      n = gated(gate, writeSync, fd, buf, offset, length, position);
    } catch (err) {
      return Promise.reject(err);
    }
    if (n !== null) return Promise.resolve(n);
    return new Promise((resolve, reject) => {
      write(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
    });
  },
};
