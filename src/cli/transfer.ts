// The sparse copy loop behind `iomapd import` and `iomapd export`: walks the source's allocation,
// reads only its data, skips blocks that are all zeroes, and writes the rest. Holes stay holes: on
// a blank target (a new file or volume) nothing is done for them; on one that held data they are
// punched (TRIM, WRITE_ZEROES that may trim, or fallocate). Every boundary it hands the target is
// a multiple of GRAIN (the source's end aside, padded to the target's minimum block), so block
// devices that assert alignment get aligned requests.

/** One run of a source's allocation: data, or a range known to read as zeroes. */
export interface SourceRun {
  readonly length: number;
  readonly data: boolean;
}

export interface TransferSource {
  /** For messages: the file, URI or volume. */
  readonly name: string;
  readonly size: number;
  /** Contiguous runs from `offset` (at least one, each longer than 0), covering at most `length`. */
  runs(offset: number, length: number): Promise<SourceRun[]>;
  /** Fills `into` from `offset` (never past `size`). */
  read(into: Buffer, offset: number): Promise<void>;
  close(): Promise<void>;
}

export interface TransferTarget {
  readonly name: string;
  readonly size: number;
  /** Offsets and lengths must be multiples of this (512 for an image volume, 1 for a file). */
  readonly minimum: number;
  /** Reads as zeroes everywhere already (a new file or volume): holes need no work. */
  readonly blank: boolean;
  write(data: Buffer, offset: number): Promise<void>;
  /** Makes the range read as zeroes, as a hole where the target can. */
  hole(offset: number, length: number): Promise<void>;
  /** Makes everything written durable. */
  finish(): Promise<void>;
}

export interface TransferResult {
  readonly bytes: number;
  /** Bytes written as data. */
  readonly written: number;
  /** Bytes left or made holes (unallocated in the source, or all-zero blocks). */
  readonly holes: number;
}

/** Zero detection and hole alignment granularity. */
export const GRAIN = 4096;
/** The largest read or write in one request. */
const CHUNK = 4 * 1024 * 1024;
/** Pieces in flight at once: enough to overlap a read with a write on loopback NBD. */
const WORKERS = 4;
/** How much allocation to ask for at a time (block status over a 16 TiB disk is paged). */
const RUNS_SPAN = 1024 * 1024 * 1024;

interface Piece {
  readonly offset: number;
  readonly length: number;
  readonly data: boolean;
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/**
 * The source as aligned pieces: holes shrunk to whole GRAINs (their ragged edges are read as
 * data and zero-checked), data cut into CHUNK-aligned pieces.
 */
async function* pieces(source: TransferSource): AsyncGenerator<Piece> {
  const size = source.size;
  let dataStart = 0;
  function* dataPieces(end: number): Generator<Piece> {
    for (let at = dataStart; at < end; ) {
      const next = Math.min(end, (Math.floor(at / CHUNK) + 1) * CHUNK);
      yield { offset: at, length: next - at, data: true };
      at = next;
    }
  }
  for (let pos = 0; pos < size; ) {
    const runs = await source.runs(pos, Math.min(RUNS_SPAN, size - pos));
    for (const run of runs) {
      const end = Math.min(size, pos + run.length);
      if (!run.data) {
        const a = Math.ceil(pos / GRAIN) * GRAIN;
        const b = end === size ? size : Math.floor(end / GRAIN) * GRAIN;
        if (a < b) {
          yield* dataPieces(a);
          yield { offset: a, length: b - a, data: false };
          dataStart = b;
        }
      }
      pos = end;
      if (pos >= size) break;
    }
  }
  yield* dataPieces(size);
}

const ZEROS = Buffer.alloc(GRAIN);

/** Whether buf[a, b) is all zero bytes. */
function allZero(buf: Buffer, a: number, b: number): boolean {
  for (let at = a; at < b; at += GRAIN) {
    const n = Math.min(GRAIN, b - at);
    if (buf.compare(ZEROS, 0, n, at, at + n) !== 0) return false;
  }
  return true;
}

/** Copies `source` into `target`; `signal` stops it between pieces (the pieces in flight finish first). */
export async function transfer(
  source: TransferSource,
  target: TransferTarget,
  onProgress: (done: number, r: TransferResult) => void,
  signal?: AbortSignal,
): Promise<TransferResult> {
  const size = source.size;
  const pad = (end: number) => (end === size ? Math.min(target.size, roundUp(end, target.minimum)) : end);
  let done = 0;
  let written = 0;
  let holes = 0;
  const report = () => onProgress(done, { bytes: done, written, holes });

  const makeHole = async (a: number, b: number) => {
    holes += b - a;
    if (!target.blank) await target.hole(a, pad(b) - a);
  };

  const copy = async (p: Piece) => {
    if (!p.data) {
      await makeHole(p.offset, p.offset + p.length);
      return;
    }
    const buf = Buffer.alloc(roundUp(p.length, target.minimum));
    await source.read(buf.subarray(0, p.length), p.offset);
    // Runs of GRAINs that are all zero or all not, relative to the source's offsets.
    let runStart = 0;
    let runZero: boolean | null = null;
    const flush = async (endRel: number) => {
      if (runZero === null || endRel <= runStart) return;
      const a = p.offset + runStart;
      const b = p.offset + endRel;
      if (runZero) await makeHole(a, b);
      else {
        await target.write(buf.subarray(runStart, pad(b) - p.offset), a);
        written += b - a;
      }
    };
    for (let rel = 0; rel < p.length; ) {
      const next = Math.min(p.length, Math.floor((p.offset + rel) / GRAIN) * GRAIN + GRAIN - p.offset);
      const zero = allZero(buf, rel, next);
      if (zero !== runZero) {
        await flush(rel);
        runStart = rel;
        runZero = zero;
      }
      rel = next;
    }
    await flush(p.length);
  };

  const work = pieces(source);
  let stop = false;
  const worker = async () => {
    for (let n = await work.next(); !n.done && !stop; n = await work.next()) {
      signal?.throwIfAborted();
      await copy(n.value).catch((err) => {
        stop = true; // the other workers finish their piece and take no more
        throw err;
      });
      done += n.value.length;
      report();
    }
  };
  const results = await Promise.allSettled(Array.from({ length: WORKERS }, worker));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  await target.finish();
  report();
  return { bytes: done, written, holes };
}
