// Copies ranges from one block device to another: what `iomapd backup` does with a snapshot of a
// volume (the source) and a raw file or block device (the destination). Ranges the source reads
// as zeros become zeroing on the destination that may punch holes, so a copy stays sparse.
import type { BlockDevice } from '../engine/block-device.ts';

/** A range to copy; `zero`: the source reads zeros there (a hole or unwritten), so none is read. */
export interface CopyRange {
  readonly offset: number;
  readonly length: number;
  readonly zero: boolean;
}

export interface CopyResult {
  /** Bytes read from the source and written to the destination. */
  bytesWritten: number;
  /** Bytes zeroed on the destination (punched where the file system allows it). */
  bytesZeroed: number;
}

/** Called after each piece with the bytes done so far and in all (a progress bar's hook). */
export type CopyProgress = (done: number, total: number) => void;

/** Bytes per read and write: large enough to stream, small enough to keep memory flat. */
const CHUNK = 4 << 20;
/** Zero detection granularity inside data (a piece shorter than this is looked at whole). */
const ZERO_GRAIN = 4096;

async function zero(dst: BlockDevice, offset: number, length: number, result: CopyResult): Promise<void> {
  await dst.zero(offset, length, { fua: false, mayTrim: true, fast: false });
  result.bytesZeroed += length;
}

/** The piece as alternating runs of data and of zeros, per ZERO_GRAIN. */
function zeroRuns(piece: Buffer): Array<{ offset: number; length: number; zero: boolean }> {
  const runs: Array<{ offset: number; length: number; zero: boolean }> = [];
  for (let o = 0; o < piece.length; o += ZERO_GRAIN) {
    const n = Math.min(ZERO_GRAIN, piece.length - o);
    const isZero = piece.subarray(o, o + n).every((b) => b === 0);
    const last = runs[runs.length - 1];
    if (last && last.zero === isZero) last.length += n;
    else runs.push({ offset: o, length: n, zero: isZero });
  }
  return runs;
}

export async function copyRanges(src: BlockDevice, dst: BlockDevice, ranges: readonly CopyRange[], onProgress?: CopyProgress): Promise<CopyResult> {
  const total = ranges.reduce((n, r) => n + r.length, 0);
  const result: CopyResult = { bytesWritten: 0, bytesZeroed: 0 };
  let done = 0;
  // A reduce, not Math.max(...ranges): a million arguments overflow the stack.
  const buf = Buffer.alloc(Math.min(CHUNK, ranges.reduce((m, r) => Math.max(m, r.length), 512)));
  for (const r of ranges) {
    for (let at = r.offset; at < r.offset + r.length; ) {
      const n = Math.min(buf.length, r.offset + r.length - at);
      const piece = buf.subarray(0, n);
      if (r.zero) await zero(dst, at, n, result);
      else {
        await src.read(piece, at);
        // Runs of written zeros need no space in the copy either: found per 4 KiB.
        for (const run of zeroRuns(piece)) {
          if (run.zero) await zero(dst, at + run.offset, run.length, result);
          else {
            await dst.write(piece.subarray(run.offset, run.offset + run.length), at + run.offset, { fua: false });
            result.bytesWritten += run.length;
          }
        }
      }
      at += n;
      done += n;
      onProgress?.(done, total);
    }
  }
  await dst.flush();
  return result;
}
