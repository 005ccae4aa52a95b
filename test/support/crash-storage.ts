// Crash simulator for tests. It keeps two images: what readers see now (written) and what would
// survive power loss (durable). sync moves every completed write into durable. A crash image is
// durable plus, for each unsynced write in order, one of: dropped, applied whole, or torn (a random
// subset of its 512-byte sectors applied), which is what a disk with a volatile cache may do.
//
// armCrash(n) makes the storage "lose power" after n more mutating calls: the crash image is taken
// at that moment and every later call fails, as if the process had died.
import { IomapdError } from '../../src/util/errors.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { seededRandom } from './seeded-random.ts';

const SECTOR = 512;

interface PendingWrite {
  offset: number;
  data: Buffer;
}

export class CrashStorage implements Storage {
  private written: Buffer;
  private durable: Buffer;
  private length: number;
  private pending: PendingWrite[] = [];
  private readonly random: () => number;
  private countdown = -1;
  private crashed: Buffer | null = null;
  /** Counters a test can assert on. */
  readonly counts = { read: 0, write: 0, sync: 0 };

  constructor(initial: Buffer, seed: number) {
    this.written = Buffer.from(initial);
    this.durable = Buffer.from(initial);
    this.length = initial.length;
    this.random = seededRandom(seed);
  }

  /** Loses power after `n` more writes or syncs (0: at the next one, before it happens). */
  armCrash(n: number): void {
    this.countdown = n;
  }

  get hasCrashed(): boolean {
    return this.crashed !== null;
  }

  /** Makes the next sync fail (EIO), like a failed fdatasync; the PoisonLatch above latches. */
  failNextSync(): void {
    this.countdown = -2;
  }

  /** The bytes that survive a crash right now (or the image taken when the armed crash fired). */
  crashImage(): Buffer {
    if (this.crashed) return Buffer.from(this.crashed);
    return this.buildCrashImage();
  }

  /** The current written view (what a reader sees before any crash). */
  writtenImage(): Buffer {
    return Buffer.from(this.written.subarray(0, this.length));
  }

  private buildCrashImage(): Buffer {
    const img = Buffer.from(this.durable.subarray(0, this.length));
    for (const w of this.pending) {
      const r = this.random();
      if (r < 0.35) continue; // dropped
      if (r < 0.7) {
        w.data.copy(img, w.offset);
        continue;
      }
      // torn: each sector independently survives or not
      for (let s = 0; s < w.data.length; s += SECTOR) {
        if (this.random() < 0.5) w.data.copy(img, w.offset + s, s, Math.min(w.data.length, s + SECTOR));
      }
    }
    return img;
  }

  private tick(): void {
    if (this.crashed) throw new IomapdError('IO', 'simulated power loss');
    if (this.countdown >= 0) {
      if (this.countdown === 0) {
        this.crashed = this.buildCrashImage();
        throw new IomapdError('IO', 'simulated power loss');
      }
      this.countdown--;
    }
  }

  private ensure(size: number): void {
    if (size <= this.written.length) return;
    const grow = (b: Buffer) => {
      const n = Buffer.alloc(Math.max(size, b.length * 2));
      b.copy(n);
      return n;
    };
    this.written = grow(this.written);
    this.durable = grow(this.durable);
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    if (this.crashed) throw new IomapdError('IO', 'simulated power loss');
    this.counts.read++;
    const avail = Math.max(0, Math.min(buf.length, this.length - offset));
    if (avail > 0) this.written.copy(buf, 0, offset, offset + avail);
    buf.fill(0, avail);
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    this.tick();
    this.counts.write++;
    const end = offset + buf.length;
    this.ensure(end);
    if (end > this.length) this.length = end;
    buf.copy(this.written, offset);
    this.pending.push({ offset, data: Buffer.from(buf) });
    await Promise.resolve();
  }

  async sync(): Promise<void> {
    if (this.countdown === -2) {
      this.countdown = -1;
      throw new IomapdError('IO', 'injected fdatasync failure');
    }
    this.tick();
    this.counts.sync++;
    for (const w of this.pending) w.data.copy(this.durable, w.offset);
    this.pending = [];
    await Promise.resolve();
  }

  async size(): Promise<number> {
    return this.length;
  }

  /** Resizing is treated as durable at once (the host filesystem's metadata journal). */
  async resize(size: number): Promise<void> {
    this.tick();
    this.ensure(size);
    if (size < this.length) {
      this.written.fill(0, size, this.length);
      this.durable.fill(0, size, this.length);
    }
    this.length = size;
  }

  async close(): Promise<void> {}
}
