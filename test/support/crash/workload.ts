// A verifying workload over several NBD connections: writes with a unique pattern per write,
// random FUA, FLUSH, TRIM and WRITE_ZEROES, and reads checked against the model while it runs.
// Each request locks its sectors (across connections) until answered, so the model sees a total
// order per sector (test/support/crash/sector-model.ts). It runs until stopped or until the daemon
// dies; unanswered requests then stay in the model as "may have landed".
import { NbdClosedError, type TestClient } from '../test-client.ts';
import { FLAG } from '../wire.ts';
import { pattern, SECTOR, sectorValue, type VolumeModel } from './sector-model.ts';

export interface Target {
  readonly name: string;
  readonly model: VolumeModel;
  /** Sectors with a request in flight (shared by every connection to this volume). */
  readonly busy: Uint8Array;
}

export function target(name: string, model: VolumeModel): Target {
  return { name, model, busy: new Uint8Array(model.sectors) };
}

export interface WorkloadStats {
  writes: number;
  fuaWrites: number;
  trims: number;
  zeroes: number;
  flushes: number;
  reads: number;
  bytesWritten: number;
  bytesRead: number;
  /** Requests that were in flight when the connection died. */
  cutOff: number;
  errors: string[];
}

export function newStats(): WorkloadStats {
  return { writes: 0, fuaWrites: 0, trims: 0, zeroes: 0, flushes: 0, reads: 0, bytesWritten: 0, bytesRead: 0, cutOff: 0, errors: [] };
}

export interface WorkerOptions {
  readonly pipe: TestClient;
  readonly target: Target;
  /** Every volume's model: a FLUSH covers all of them (it is image-wide). */
  readonly allModels: () => VolumeModel[];
  readonly random: () => number;
  /** Requests kept in flight on this connection. */
  readonly depth: number;
  /** Largest request, in sectors. */
  readonly maxSectors: number;
  readonly stats: WorkloadStats;
  /** Next unique write value (shared by every worker). */
  readonly nextValue: () => number;
  readonly stopped: () => boolean;
  /** Mix: probabilities of FLUSH, TRIM, WRITE_ZEROES, READ (the rest are writes); FUA share of writes. */
  readonly mix?: { flush: number; trim: number; zero: number; read: number; fua: number };
}

const DEFAULT_MIX = { flush: 0.06, trim: 0.05, zero: 0.05, read: 0.12, fua: 0.25 };

/** Runs one connection's share until `stopped()` or the connection dies; resolves when all its requests settled. */
export async function runWorker(o: WorkerOptions): Promise<void> {
  const mix = o.mix ?? DEFAULT_MIX;
  const running = new Set<Promise<void>>();
  const maxLoops = 10_000_000; // a bound for the loop; time or the kill ends it long before
  for (let loop = 0; loop < maxLoops && !o.stopped() && !o.pipe.closed; loop++) {
    if (running.size >= o.depth) {
      await Promise.race(running);
      continue;
    }
    const p = issue(o, mix);
    if (p === null) {
      // Every range we tried was busy: let something finish first.
      if (running.size > 0) await Promise.race(running);
      else await new Promise((r) => setImmediate(r));
      continue;
    }
    const tracked: Promise<void> = p.finally(() => running.delete(tracked));
    running.add(tracked);
  }
  await Promise.allSettled(running);
}

function issue(o: WorkerOptions, mix: typeof DEFAULT_MIX): Promise<void> | null {
  const r = o.random();
  if (r < mix.flush) return flush(o);
  const span = pick(o);
  if (span === null) return null;
  const { first, count } = span;
  const t = o.target;
  const release = (): void => {
    t.busy.fill(0, first, first + count);
  };
  if (r < mix.flush + mix.read) return read(o, first, count).finally(release);
  const kind = r < mix.flush + mix.read + mix.trim ? 'trim' : r < mix.flush + mix.read + mix.trim + mix.zero ? 'zero' : 'write';
  const fua = o.random() < mix.fua;
  const flags = fua ? FLAG.FUA : 0;
  const value = kind === 'write' ? o.nextValue() : 0;
  const seq = t.model.begin(first, count, value);
  const offset = first * SECTOR;
  const length = count * SECTOR;
  const sent =
    kind === 'write'
      ? o.pipe.writeAt(offset, pattern(count, first, value), flags)
      : kind === 'trim'
        ? o.pipe.trim(offset, length, flags)
        : o.pipe.zero(offset, length, flags | (o.random() < 0.5 ? FLAG.NO_HOLE : 0));
  return sent
    .then(() => {
      t.model.ack(first, count, seq, fua);
      if (kind === 'write') {
        o.stats.writes++;
        o.stats.bytesWritten += length;
        if (fua) o.stats.fuaWrites++;
      } else if (kind === 'trim') o.stats.trims++;
      else o.stats.zeroes++;
    }, (err: unknown) => note(o, err))
    .finally(release);
}

function flush(o: WorkerOptions): Promise<void> {
  const marks = o.allModels().map((m) => [m, m.flushBegin()] as const);
  return o.pipe.flush().then(
    () => {
      for (const [m, mark] of marks) m.flushEnd(mark);
      o.stats.flushes++;
    },
    (err: unknown) => note(o, err),
  );
}

/** A live read: nothing else touches these sectors, so each must hold exactly the last value written. */
function read(o: WorkerOptions, first: number, count: number): Promise<void> {
  const t = o.target;
  return o.pipe.readAt(first * SECTOR, count * SECTOR).then(
    (data) => {
      o.stats.reads++;
      o.stats.bytesRead += data.length;
      for (let i = 0; i < count; i++) {
        const got = sectorValue(data, i * SECTOR, first + i);
        const want = t.model.latest(first + i);
        if (got !== want && o.stats.errors.length < 20) o.stats.errors.push(`live read of ${t.name} sector ${first + i}: got ${got}, want ${want}`);
      }
    },
    (err: unknown) => note(o, err),
  );
}

function note(o: WorkerOptions, err: unknown): void {
  if (err instanceof NbdClosedError) {
    o.stats.cutOff++;
    return;
  }
  if (o.stats.errors.length < 20) o.stats.errors.push(`${o.target.name}: ${(err as Error).message}`);
}

/** A random run of free sectors, locked for the caller; null if a few tries found none. */
function pick(o: WorkerOptions): { first: number; count: number } | null {
  const { busy, model } = o.target;
  for (let attempt = 0; attempt < 8; attempt++) {
    // Mostly small requests (sub-block and single-block), sometimes larger ones.
    const count = o.random() < 0.7 ? 1 + Math.floor(o.random() * 16) : 1 + Math.floor(o.random() * o.maxSectors);
    const first = Math.floor(o.random() * (model.sectors - count + 1));
    let free = true;
    for (let s = first; s < first + count; s++) {
      if (busy[s]) {
        free = false;
        break;
      }
    }
    if (!free) continue;
    busy.fill(1, first, first + count);
    return { first, count };
  }
  return null;
}

/** Reads a whole volume in pieces (bounded request size). */
export async function readVolume(pipe: TestClient, size: number, piece = 4 << 20): Promise<Buffer> {
  const out = Buffer.alloc(size);
  for (let at = 0; at < size; at += piece) {
    const len = Math.min(piece, size - at);
    (await pipe.readAt(at, len)).copy(out, at);
  }
  return out;
}
