// WRITE_ZEROES and TRIM (semantics T1-T4). The store zeroes and punches whole allocation blocks by
// metadata alone; the engine handles partly covered edge blocks itself:
//   hole or unwritten edge -> already reads zeros: nothing (with NO_HOLE a hole edge is made
//                            UNWRITTEN by metadata, so the whole range ends up provisioned, T3);
//   mapped edge            -> zeros written through the write path (in place, or copy-up when
//                            shared, E9): this is the only slow case, refused up front under
//                            FAST_ZERO (T4).
// TRIM edges are zeroed like WRITE_ZEROES edges (not left untouched as T1 allows) because
// BlockDevice promises that a trimmed range reads as zeros (docs/ENGINE.md).
// The caller holds the block-rounded range lock, so the map of the range cannot change under us.
import type { SpaceReservation } from '../fs/allocator.ts';
import type { Mapping } from '../fs/mapping.ts';
import { IomapdError } from '../util/errors.ts';
import { writeRange } from './write-path.ts';
import type { VolumeContext } from './volume-context.ts';

export interface ZeroRequest {
  readonly offset: number;
  readonly length: number;
  readonly intent: 'zero' | 'trim';
  /** NO_HOLE: keep (or make) the range allocated. */
  readonly noHole: boolean;
  /** FAST_ZERO: fail with FAST_ZERO_UNAVAILABLE rather than write data. */
  readonly fast: boolean;
}

interface Edge {
  start: number;
  end: number;
  block: number;
  action: 'none' | 'provision' | 'write';
  shared: boolean;
}

/** Plans the edges, checks FAST_ZERO, and says how many blocks to reserve; no side effects. */
export function planZero(vc: VolumeContext, req: ZeroRequest): { edges: Edge[]; mid: [number, number] | null; blocksNeeded: number } {
  const { mapper, name } = vc;
  const B = mapper.blockSize;
  const end = req.offset + req.length;
  if (mapper.isInline(name)) return { edges: [], mid: [req.offset, end], blocksNeeded: 0 };
  const edges: Edge[] = [];
  const addEdge = (block: number, start: number, stop: number): void => {
    const e = mapper.lookup(name, block);
    const action = e.type === 'mapped' ? 'write' : e.type === 'hole' && req.noHole && req.intent === 'zero' ? 'provision' : 'none';
    edges.push({ start, end: stop, block, action, shared: e.shared });
  };
  const headBlock = Math.floor(req.offset / B) * B;
  if (req.offset !== headBlock || end < headBlock + B) addEdge(headBlock, req.offset, Math.min(end, headBlock + B));
  const tailBlock = Math.floor((end - 1) / B) * B;
  if (end !== tailBlock + B && (tailBlock !== headBlock || edges.length === 0)) addEdge(tailBlock, Math.max(req.offset, tailBlock), end);
  const a = Math.ceil(req.offset / B) * B;
  const b = Math.floor(end / B) * B;
  const mid: [number, number] | null = a < b ? [a, b] : null;
  if (req.fast && edges.some((e) => e.action === 'write')) {
    throw new IomapdError('FAST_ZERO_UNAVAILABLE', 'a partly covered block holds data and would need a data write');
  }
  let blocksNeeded = edges.filter((e) => e.action === 'provision' || (e.action === 'write' && e.shared)).length;
  if (mid && req.noHole && req.intent === 'zero') {
    for (const e of mapper.extents(name, mid[0], mid[1])) {
      if (e.type === 'hole' || e.shared) {
        const s = Math.max(e.offset, mid[0]);
        blocksNeeded += (Math.min(e.offset + e.length, mid[1]) - s) / B;
      }
    }
  }
  return { edges, mid, blocksNeeded };
}

export async function zeroRange(vc: VolumeContext, req: ZeroRequest, plan: ReturnType<typeof planZero>, reservation?: SpaceReservation): Promise<void> {
  const { mapper, name } = vc;
  const B = mapper.blockSize;
  const opts = { noHole: req.noHole, ...(reservation ? { reservation } : {}) };
  const metadataOnly = async (start: number, end: number, intent: 'zero' | 'trim'): Promise<void> => {
    let at = start;
    while (at < end) {
      const m: Mapping = await mapper.begin(name, at, end - at, intent, opts);
      if (m.type === 'inline') {
        await mapper.end(m, end - start);
        return;
      }
      await mapper.end(m, m.length);
      at = m.offset + m.length;
    }
  };
  if (plan.mid) await metadataOnly(plan.mid[0], plan.mid[1], req.intent);
  for (const e of plan.edges) {
    if (e.action === 'provision') await metadataOnly(e.block, e.block + B, 'zero');
    else if (e.action === 'write') await writeRange(vc, Buffer.alloc(e.end - e.start), e.start, reservation, false);
  }
  vc.counters.bytesZeroed += req.length;
}
