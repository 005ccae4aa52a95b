// Lazy reference counts (state.ts): a snapshot shares its source's tree, so its blocks are shared
// through the tree before any count says so; a write copies the shared leaf and makes its counts
// exact; deleting a snapshot leaves the source's blocks shared until that delete is durable.
import { describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MappingFlags } from '../../src/fs/mapping.ts';
import { OpCode } from '../../src/fs/ops.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { readBytes, writeBytes } from './support/mini-engine.ts';

const B = 4096;

async function fresh(): Promise<ImageStore> {
  const store = await ImageStore.create(new MemoryStorage(Buffer.alloc(2 << 20, 0xee)), { dataBytes: 1 << 20, journalBytes: 64 << 10 });
  await store.createVolume('v', 400 * B);
  // 200 separate extents (every other block), so the map has several leaves.
  for (let i = 0; i < 200; i++) await writeBytes(store, 'v', 2 * i * B, Buffer.alloc(B, (i % 250) + 1));
  await store.commit();
  return store;
}

describe('lazy reference counts', () => {
  it('a snapshot copies no map and bumps no count; one write copies one leaf and counts exactly', async () => {
    const store = await fresh();
    const sharedBefore = store.meta.shared.size;
    await store.snapshot('v', 's');
    const v = store.meta.byName.get('v')!;
    const s = store.meta.byName.get('s')!;
    expect(s.map.tree.root).toBe(v.map.tree.root);
    expect(s.origin).toBe(v.id);
    expect(store.meta.shared.size).toBe(sharedBefore);
    expect(store.lookup('v', 0)).toMatchObject({ type: 'mapped', shared: true });
    const m = await store.begin('v', 0, B, 'write');
    expect(m.flags & MappingFlags.SHARED).toBeTruthy();
    expect(m.cowPhysical).toBeGreaterThanOrEqual(0);
    await store.writeData(m.cowPhysical, Buffer.alloc(B, 0xaa));
    await store.end(m, B);
    // The copied leaf counts its other blocks twice now (one leaf each side), block 0 once; the
    // snapshot's old block stays shared for placement until the remap is durable.
    expect(store.meta.shared.size).toBeGreaterThan(0);
    expect(store.lookup('v', 0)).toMatchObject({ shared: false });
    expect(store.lookup('s', 0)).toMatchObject({ shared: true });
    await store.commit();
    expect(store.lookup('s', 0)).toMatchObject({ shared: false });
    expect(store.lookup('v', 2 * B)).toMatchObject({ shared: true });
    expect((await readBytes(store, 's', 0, B))[0]).toBe(1);
    expect((await readBytes(store, 'v', 0, B))[0]).toBe(0xaa);
    expect(store.verify().errors).toEqual([]);
    await store.close();
  });

  it('deleting a snapshot keeps the source shared for placement until the delete is durable', async () => {
    const store = await fresh();
    await store.snapshot('v', 's');
    const s = store.meta.byName.get('s')!;
    // Log the delete without committing it (what volumes.delete does before its commit returns).
    (store as unknown as { ops: { log(op: unknown): void } }).ops.log({ code: OpCode.VOL_DELETE, id: s.id });
    expect(store.meta.byName.get('v')!.map.tree.root.refs).toBe(1);
    const early = await store.begin('v', 100 * 2 * B, B, 'write');
    expect(early.flags & MappingFlags.SHARED).toBeTruthy();
    await store.end(early, 0, new Error('not written'));
    await store.commit();
    const late = await store.begin('v', 100 * 2 * B, B, 'write');
    expect(late.flags & MappingFlags.SHARED).toBe(0);
    expect(late.cowPhysical).toBe(-1);
    await store.end(late, 0, new Error('not written'));
    expect(store.verify().errors).toEqual([]);
    await store.close();
  });

  it('check catches a wrong node refcount and a wrong block count', async () => {
    const store = await fresh();
    await store.snapshot('v', 's');
    const root = store.meta.byName.get('v')!.map.tree.root;
    root.refs = 1;
    expect(store.verify().errors.join('\n')).toMatch(/has refcount 1, but 2 holders/);
    root.refs = 2;
    await writeBytes(store, 'v', 0, Buffer.alloc(B, 7));
    expect(store.verify().errors).toEqual([]);
    const first = store.meta.shared.entries().next().value!;
    store.meta.shared.replace(first.start, first.v.len, { len: first.v.len, count: first.v.count + 1 });
    expect(store.verify().errors.join('\n')).toMatch(/refcount of block \d+ is 3, but it has 2 references/);
    await store.abandon();
  });
});
