import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BTree, type Packing } from '../../src/fs/btree.ts';
import { type Extent, extentOps } from '../../src/fs/extent.ts';
import { RangeMap } from '../../src/fs/range-map.ts';

const RUNS = Number(process.env.IOMAPD_FS_CASES ?? 60);
const numberPacking: Packing<number> = { width: 1, pack: (v, d, at) => void (d[at] = v), unpack: (d, at) => d[at]! };

describe('BTree', () => {
  it('matches a sorted-map model under random inserts and deletes', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 2000 })), { maxLength: 1500 }), (ops) => {
        const t = new BTree<number>(numberPacking);
        const m = new Map<number, number>();
        for (const [ins, k] of ops) {
          if (ins) {
            t.set(k, k * 2);
            m.set(k, k * 2);
          } else expect(t.delete(k)).toBe(m.delete(k));
        }
        const keys = [...m.keys()].sort((a, b) => a - b);
        expect([...t.entries()].map(([k]) => k)).toEqual(keys);
        expect(t.size).toBe(keys.length);
        for (const probe of [0, 500, 1000, 1999, 2500]) {
          const fl = keys.filter((k) => k <= probe).pop();
          const c = t.floor(probe);
          expect(c ? t.key(c) : undefined).toBe(fl);
          const ce = keys.find((k) => k >= probe);
          const c2 = t.ceil(probe);
          expect(c2 ? t.key(c2) : undefined).toBe(ce);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('bulk-builds from sorted input', () => {
    const keys = Array.from({ length: 10000 }, (_, i) => i * 3);
    const t = BTree.fromSorted(numberPacking, keys, keys);
    expect(t.size).toBe(10000);
    expect(t.get(2997)).toBe(2997);
    expect(t.key(t.floor(3001)!)).toBe(3000);
    t.set(1, 1);
    expect(t.key(t.advance(t.first()!)!)).toBe(1);
  });
});

/** Per-block model: logical block -> [kind, phys] or undefined. */
describe('RangeMap (extent map)', () => {
  it('replace() matches a per-block model and keeps neighbours merged', () => {
    const op = fc.record({
      start: fc.integer({ min: 0, max: 120 }),
      len: fc.integer({ min: 1, max: 30 }),
      kind: fc.constantFrom(0, 1, 2),
      phys: fc.integer({ min: 0, max: 300 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const map = new RangeMap<Extent>(extentOps);
        const model: Array<[number, number] | undefined> = [];
        for (const o of ops) {
          const ext = o.kind === 0 ? null : { len: o.len, kind: o.kind as 1 | 2, phys: o.phys };
          const removed = map.replace(o.start, o.len, ext);
          let removedBlocks = 0;
          for (const r of removed) removedBlocks += r.v.len;
          let modelRemoved = 0;
          for (let i = 0; i < o.len; i++) {
            if (model[o.start + i]) modelRemoved++;
            model[o.start + i] = o.kind === 0 ? undefined : [o.kind, o.phys + i];
          }
          expect(removedBlocks).toBe(modelRemoved);
        }
        let prev: { start: number; v: Extent } | null = null;
        for (const e of map.entries()) {
          for (let i = 0; i < e.v.len; i++) expect(model[e.start + i]).toEqual([e.v.kind, e.v.phys + i]);
          if (prev && prev.start + prev.v.len === e.start) expect(extentOps.join(prev.v, e.v)).toBeNull();
          prev = e;
        }
        for (let b = 0; b < 160; b++) {
          const hit = map.covering(b);
          expect(hit ? [hit.v.kind, hit.v.phys + (b - hit.start)] : undefined).toEqual(model[b]);
        }
      }),
      { numRuns: RUNS },
    );
  });
});
