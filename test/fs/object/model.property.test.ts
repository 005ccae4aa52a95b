// Property: the object-store image matches the same plain-buffer model as the file image
// (test/fs/support/model.ts) under any sequence of writes, zeroes, trims, snapshots, clones,
// creates, deletes, resizes, commits, checkpoints and reopens on a new host, with GC passes in
// between; its metadata verifies and check finds every reference resolved.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ImageStore } from '../../../src/fs/image-store.ts';
import { checkObjectImage } from '../../../src/fs/object/object-check.ts';
import { collectGarbage } from '../../../src/fs/object/object-gc.ts';
import type { ObjectImageStore } from '../../../src/fs/object/object-image-store.ts';
import { FakeObjectStore } from '../../support/fake-object-store.ts';
import { type Model, type Runner, compareAll, opArb, step } from '../support/model.ts';
import { createSmall, openSmall } from './helpers.ts';

const RUNS = Number(process.env.IOMAPD_FS_CASES ?? 60);
const SEED = Number(process.env.IOMAPD_FS_SEED ?? 20261203);

/** The model's runner drives an ImageStore; the object image has every method it calls. */
const asStore = (s: ObjectImageStore): ImageStore => s as unknown as ImageStore;
const asObject = (s: ImageStore): ObjectImageStore => s as unknown as ObjectImageStore;

describe('object image against the reference model', () => {
  it('random operation sequences match the model; GC and check keep every reference', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 40 }), fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }), async (ops, gcAfter) => {
        let bucket = new FakeObjectStore({ pageSize: 10 });
        const store = await createSmall(bucket, { dataBytes: 1 << 20, segmentBlocks: 4, checkpointEvery: 3 });
        await store.createVolume('base', 16 * 4096);
        const model: Model = new Map([['base', { data: Buffer.alloc(16 * 4096), readOnly: false }]]);
        const r: Runner = {
          store: asStore(store),
          model,
          counter: 1,
          reopen: async () => {
            await r.store.close();
            bucket = bucket.durable(); // another host: nothing but the bucket
            return asStore(await openSmall(bucket, { segmentBlocks: 4, checkpointEvery: 3 }));
          },
        };
        for (const [i, op] of ops.entries()) {
          await step(r, op);
          if (gcAfter[i]) await collectGarbage(asObject(r.store), { graceMs: 0, threshold: 0.9 });
          await compareAll(r.store, model);
          expect(r.store.verify().errors).toEqual([]);
        }
        r.store = await r.reopen();
        await compareAll(r.store, model);
        expect(r.store.verify().errors).toEqual([]);
        await collectGarbage(asObject(r.store), { graceMs: 0 });
        await r.store.close();
        const report = await checkObjectImage(bucket);
        expect(report.errors).toEqual([]);
        expect(report.leaked).toEqual([]);
      }),
      { numRuns: RUNS, seed: SEED },
    );
  }, 120_000);
});
