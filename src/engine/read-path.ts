// READ: walk the range mapping by mapping (semantics E1-E3, E10). Holes and unwritten space are
// zero-filled without a backing read; mapped space is read straight into the reply buffer; inline
// data is copied from the record. Every mapping pins its blocks until end(), after all sub-reads
// settled (D7), so a concurrent TRIM or COW cannot hand them to someone else mid-read.
import type { Mapping } from '../fs/mapping.ts';
import { chunks, IoWindow, SUB_IO_BYTES } from './io-window.ts';
import { invariant } from './invariant.ts';
import type { VolumeContext } from './volume-context.ts';

export async function readRange(vc: VolumeContext, into: Buffer, offset: number): Promise<void> {
  const { mapper, data, name, counters } = vc;
  if (into.length === 0) return;
  const first = await mapper.begin(name, offset, into.length, 'read');
  // Most reads: one mapped piece and one sub-read, so no window (same pin and end rules).
  if (first.type === 'mapped' && first.offset + first.length >= offset + into.length && into.length <= SUB_IO_BYTES) {
    try {
      await data.read(first.physical + (offset - first.offset), into);
      counters.imageBytesRead += into.length;
      counters.clientBytesRead += into.length;
    } finally {
      await mapper.end(first, 0);
    }
    return;
  }
  await readPieces(vc, into, offset, first);
}

async function readPieces(vc: VolumeContext, into: Buffer, offset: number, first: Mapping): Promise<void> {
  const { mapper, data, name, counters } = vc;
  const end = offset + into.length;
  const win = new IoWindow();
  const begun: Mapping[] = [];
  let next: Mapping | null = first;
  try {
    let at = offset;
    while (at < end && !win.failed) {
      const m = next ?? (await mapper.begin(name, at, end - at, 'read'));
      next = null;
      begun.push(m);
      const segEnd = Math.min(end, m.offset + m.length);
      const dst = into.subarray(at - offset, segEnd - offset);
      switch (m.type) {
        case 'hole':
        case 'unwritten':
          dst.fill(0);
          counters.zeroFilledBytes += dst.length;
          break;
        case 'inline':
          if (!m.inline || m.inline.length < segEnd) throw invariant(vc.log, 'inline record shorter than the volume', { volume: name });
          m.inline.copy(dst, 0, at, segEnd);
          break;
        case 'mapped':
          for (const [s, e] of chunks(at, segEnd)) {
            const physical = m.physical + (s - m.offset);
            const buf = into.subarray(s - offset, e - offset);
            await win.issue(async () => {
              await data.read(physical, buf);
              counters.imageBytesRead += buf.length;
            });
          }
          break;
        default:
          throw invariant(vc.log, 'unknown mapping type on read', { volume: name, type: (m as Mapping).type });
      }
      at = segEnd;
    }
    await win.settle();
    counters.clientBytesRead += into.length;
  } catch (err) {
    win.fail(err);
    await win.settle().catch(() => {});
    throw win.error;
  } finally {
    for (const m of begun) await mapper.end(m, 0);
  }
}
