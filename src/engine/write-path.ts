// WRITE: walk the range mapping by mapping and handle each piece by type (semantics E4-E10):
//   mapped, exclusive   -> in place, only the client's bytes (E6);
//   unwritten (or NEW)  -> in place; partly covered blocks are written whole, zero-padded (Z2);
//   mapped, SHARED      -> whole blocks to the private COW target, partly covered blocks merged
//                          over a copy-up of the old block (E8, E9);
//   inline              -> copied into the record (E10);
//   hole                -> impossible: begin(write) allocates (E4), so it is an invariant error.
// All mappings are begun first, their sub-I/Os run through one bounded window, and end() runs only
// after everything settled (C1): with the full byte count on success, with the error otherwise, so
// a failed request converts and remaps nothing (L5). The caller holds the block-rounded range lock.
import type { SpaceReservation } from '../fs/allocator.ts';
import { type Mapping, MappingFlags } from '../fs/mapping.ts';
import { chunks, IoWindow, SUB_IO_BYTES } from './io-window.ts';
import { invariant } from './invariant.ts';
import type { VolumeContext } from './volume-context.ts';

export interface WriteOutcome {
  /** Every piece was mapped, exclusive and clean: FUA needs only a data sync (D2). */
  pure: boolean;
}

/** How a partly covered block gets its bytes outside the write: zeros (pad) or the old block (copy-up). */
type Fill = 'pad' | { copyFrom: number };

export async function writeRange(vc: VolumeContext, data: Buffer, offset: number, reservation?: SpaceReservation, fromClient = true): Promise<WriteOutcome> {
  const { mapper, name } = vc;
  const end = offset + data.length;
  const win = new IoWindow();
  const begun: Mapping[] = [];
  let pure = true;
  if (data.length === 0) return { pure };
  const first = await mapper.begin(name, offset, data.length, 'write', reservation ? { reservation } : {});
  // Most writes: one clean, exclusive mapped piece and one sub-write, so no window (same end rules).
  if (first.type === 'mapped' && first.flags === 0 && first.offset + first.length >= end && data.length <= SUB_IO_BYTES) {
    try {
      await vc.data.write(first.physical + (offset - first.offset), data);
    } catch (err) {
      await mapper.end(first, 0, err);
      throw err;
    }
    vc.counters.imageBytesWritten += data.length;
    await mapper.end(first, first.length);
    if (fromClient) vc.counters.clientBytesWritten += data.length;
    return { pure };
  }
  begun.push(first);
  try {
    let at = offset;
    let m = first;
    for (;;) {
      const segEnd = Math.min(end, m.offset + m.length);
      const src = data.subarray(at - offset, segEnd - offset);
      if (m.type !== 'mapped' || m.flags !== 0) pure = false;
      switch (m.type) {
        case 'inline':
          if (!m.inline || m.inline.length !== m.length) throw invariant(vc.log, 'inline record does not match the volume', { volume: name });
          mapper.writeInline(m, at, src);
          break;
        case 'unwritten':
          await writeBlocks(vc, win, m, m.physical, at, src, 'pad');
          break;
        case 'mapped':
          if (m.flags & MappingFlags.SHARED) {
            if (m.cowPhysical < 0) throw invariant(vc.log, 'shared write mapping without a COW target', { volume: name, offset: m.offset });
            vc.counters.cowCopies++;
            await writeBlocks(vc, win, m, m.cowPhysical, at, src, { copyFrom: m.physical });
          } else if (m.flags & MappingFlags.NEW) {
            await writeBlocks(vc, win, m, m.physical, at, src, 'pad'); // E7: NEW is treated like UNWRITTEN
          } else {
            await writeInPlace(vc, win, m.physical + (at - m.offset), src);
          }
          break;
        case 'hole':
          throw invariant(vc.log, 'hole mapping reached the write path', { volume: name, offset: m.offset });
        default:
          throw invariant(vc.log, 'unknown mapping type on write', { volume: name, type: (m as Mapping).type });
      }
      at = segEnd;
      if (at >= end || win.failed) break;
      m = await mapper.begin(name, at, end - at, 'write', reservation ? { reservation } : {});
      begun.push(m);
    }
    await win.settle();
  } catch (err) {
    win.fail(err);
    await win.settle().catch(() => {});
  }
  // Completion stage: convert / remap only if every byte of every piece landed (L5, Z4).
  for (const m of begun) {
    if (win.failed) await mapper.end(m, 0, win.error);
    else await mapper.end(m, m.length);
  }
  if (win.failed) throw win.error;
  if (fromClient) vc.counters.clientBytesWritten += data.length;
  return { pure };
}

async function writeInPlace(vc: VolumeContext, win: IoWindow, physical: number, src: Buffer): Promise<void> {
  for (const [s, e] of chunks(0, src.length)) {
    const piece = src.subarray(s, e);
    await win.issue(async () => {
      await vc.data.write(physical + s, piece);
      vc.counters.imageBytesWritten += piece.length;
    });
  }
}

/**
 * Writes `src` (logical offset `at`, inside mapping m) to `target` (the physical address of
 * m.offset), whole blocks only: partly covered head and tail blocks are built in memory from the
 * fill plus the new bytes and written with one pwrite each (Z2's permitted form).
 */
async function writeBlocks(vc: VolumeContext, win: IoWindow, m: Mapping, target: number, at: number, src: Buffer, fill: Fill): Promise<void> {
  const B = vc.mapper.blockSize;
  const segEnd = at + src.length;
  const headBlock = Math.floor(at / B) * B;
  const tailBlock = Math.floor((segEnd - 1) / B) * B;
  const headPartial = at !== headBlock || segEnd < headBlock + B;
  const tailPartial = tailBlock !== headBlock && segEnd !== tailBlock + B;
  const partial = async (block: number): Promise<void> => {
    const from = Math.max(at, block);
    const to = Math.min(segEnd, block + B);
    await win.issue(async () => {
      const buf = Buffer.alloc(B);
      if (fill === 'pad') {
        vc.counters.padBytes += B - (to - from);
      } else {
        await vc.data.read(fill.copyFrom + (block - m.offset), buf);
        vc.counters.imageBytesRead += B;
        vc.counters.copyUpBytes += B - (to - from);
      }
      src.copy(buf, from - block, from - at, to - at);
      await vc.data.write(target + (block - m.offset), buf);
      vc.counters.imageBytesWritten += B;
    });
  };
  if (headPartial) await partial(headBlock);
  const midStart = headPartial ? headBlock + B : at;
  const midEnd = tailPartial ? tailBlock : Math.max(segEnd, midStart);
  if (midEnd > midStart) {
    const mid = src.subarray(midStart - at, midEnd - at);
    await writeInPlace(vc, win, target + (midStart - m.offset), mid);
  }
  if (tailPartial) await partial(tailBlock);
}
