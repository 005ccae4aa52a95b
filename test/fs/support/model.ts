// A reference model for property and crash tests: each volume is a plain Buffer. Random ops run
// against both the store (through the mini engine) and the model. Every write fills whole
// 512-byte sectors with one byte value, so crash checks can reason per sector.
import fc from 'fast-check';
import type { ImageStore } from '../../../src/fs/image-store.ts';
import { punch, readBytes, writeBytes } from './mini-engine.ts';

export const B = 4096;
export const VOL_BLOCKS = 16;
export const MAX_VOLUMES = 6;

export interface ModelVolume {
  data: Buffer;
  readOnly: boolean;
}
export type Model = Map<string, ModelVolume>;

export type ModelOp =
  | { t: 'write'; v: number; sector: number; sectors: number }
  | { t: 'zero'; v: number; blk: number; blocks: number; noHole: boolean }
  | { t: 'trim'; v: number; blk: number; blocks: number }
  | { t: 'snapshot'; v: number }
  | { t: 'clone'; v: number }
  | { t: 'create'; inline: boolean; preallocate: boolean }
  | { t: 'delete'; v: number }
  | { t: 'resize'; v: number; blocks: number }
  | { t: 'commit' }
  | { t: 'checkpoint' }
  | { t: 'reopen' };

const vol = fc.integer({ min: 0, max: 50 });
export const opArb: fc.Arbitrary<ModelOp> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('write' as const), v: vol, sector: fc.integer({ min: 0, max: VOL_BLOCKS * 8 - 1 }), sectors: fc.integer({ min: 1, max: 20 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('zero' as const), v: vol, blk: fc.integer({ min: 0, max: VOL_BLOCKS - 1 }), blocks: fc.integer({ min: 1, max: 6 }), noHole: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('trim' as const), v: vol, blk: fc.integer({ min: 0, max: VOL_BLOCKS - 1 }), blocks: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('snapshot' as const), v: vol }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('clone' as const), v: vol }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('create' as const), inline: fc.boolean(), preallocate: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('delete' as const), v: vol }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('resize' as const), v: vol, blocks: fc.integer({ min: 1, max: VOL_BLOCKS }) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'commit' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'checkpoint' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'reopen' as const }) },
);

export function cloneModel(m: Model): Model {
  return new Map([...m].map(([k, v]) => [k, { data: Buffer.from(v.data), readOnly: v.readOnly }]));
}

function pick(m: Model, i: number, writable = false): string | null {
  const names = [...m.keys()].filter((n) => !writable || !m.get(n)!.readOnly).sort();
  return names.length === 0 ? null : names[i % names.length]!;
}

export interface Runner {
  store: ImageStore;
  model: Model;
  counter: number;
  reopen: () => Promise<ImageStore>;
  /** Called with the sectors a write changed (for crash bookkeeping). */
  onWrite?: (vol: string, firstSector: number, sectors: number, value: number) => void;
}

/** Applies one op to store and model. Returns whether it made everything before it durable. */
export async function step(r: Runner, op: ModelOp): Promise<boolean> {
  const m = r.model;
  switch (op.t) {
    case 'write': {
      const name = pick(m, op.v, true);
      if (!name) return false;
      const v = m.get(name)!;
      const total = v.data.length / 512;
      const first = op.sector % total;
      const n = Math.min(op.sectors, total - first);
      const value = (r.counter++ % 250) + 1;
      const data = Buffer.alloc(n * 512, value);
      r.onWrite?.(name, first, n, value);
      await writeBytes(r.store, name, first * 512, data);
      data.copy(v.data, first * 512);
      return false;
    }
    case 'zero':
    case 'trim': {
      const name = pick(m, op.v, true);
      if (!name) return false;
      const v = m.get(name)!;
      if (v.data.length < B) {
        r.onWrite?.(name, 0, v.data.length / 512, 0);
        await punch(r.store, name, 0, v.data.length, op.t, op.t === 'zero' && op.noHole);
        v.data.fill(0);
        return false;
      }
      const blocks = v.data.length / B;
      const blk = op.blk % blocks;
      const n = Math.min(op.blocks, blocks - blk);
      // Until the next commit a crash may show these zeros (an unflushed zero, like an unflushed
      // write, may or may not have happened).
      r.onWrite?.(name, (blk * B) / 512, (n * B) / 512, 0);
      await punch(r.store, name, blk * B, n * B, op.t, op.t === 'zero' && op.noHole);
      v.data.fill(0, blk * B, (blk + n) * B);
      return false;
    }
    case 'snapshot':
    case 'clone': {
      const src = pick(m, op.v);
      if (!src || m.size >= MAX_VOLUMES) return false;
      const name = `${op.t}${r.counter++}`;
      // Admin ops update the model first: if a crash interrupts their commit, the model holds
      // the state the commit would have made durable.
      m.set(name, { data: Buffer.from(m.get(src)!.data), readOnly: op.t === 'snapshot' });
      if (op.t === 'snapshot') await r.store.snapshot(src, name);
      else await r.store.clone(src, name);
      return true;
    }
    case 'create': {
      if (m.size >= MAX_VOLUMES) return false;
      const name = `vol${r.counter++}`;
      const size = op.inline ? 1024 : VOL_BLOCKS * B;
      m.set(name, { data: Buffer.alloc(size), readOnly: false });
      await r.store.createVolume(name, size, { preallocate: op.preallocate });
      return true;
    }
    case 'delete': {
      const name = pick(m, op.v);
      if (!name) return false;
      m.delete(name);
      await r.store.deleteVolume(name);
      return true;
    }
    case 'resize': {
      const name = pick(m, op.v, true);
      if (!name) return false;
      const v = m.get(name)!;
      const size = op.blocks * B;
      const grown = Buffer.alloc(size);
      v.data.copy(grown, 0, 0, Math.min(size, v.data.length));
      v.data = grown;
      await r.store.resizeVolume(name, size);
      return true;
    }
    case 'commit':
      await r.store.commit();
      return true;
    case 'checkpoint':
      await r.store.checkpoint();
      return true;
    case 'reopen':
      r.store = await r.reopen();
      return true;
  }
}

/** Reads every volume and compares it with the model. */
export async function compareAll(store: ImageStore, model: Model): Promise<void> {
  const names = store.listVolumes().map((v) => v.name).sort();
  if (JSON.stringify(names) !== JSON.stringify([...model.keys()].sort())) {
    throw new Error(`volumes differ: store ${names.join(',')} model ${[...model.keys()].sort().join(',')}`);
  }
  for (const [name, v] of model) {
    const got = await readBytes(store, name, 0, v.data.length);
    if (!got.equals(v.data)) {
      const at = got.findIndex((b, i) => b !== v.data[i]);
      throw new Error(`volume ${name} differs at byte ${at}: store ${got[at]} model ${v.data[at]}`);
    }
  }
}
