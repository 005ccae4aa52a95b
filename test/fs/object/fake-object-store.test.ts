// The fake bucket itself: as strict as S3 where the object-store image depends on it
// (atomic preconditions, fresh etags, ranges, ordered paginated lists) and its faults do what
// the tests that use them assume.
import { describe, expect, it } from 'vitest';
import { ObjectConflict } from '../../../src/storage/object-store.ts';
import { FakeObjectStore } from '../../support/fake-object-store.ts';

const b = (s: string) => Buffer.from(s);

async function collect(it: AsyncIterable<{ key: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const o of it) out.push(o.key);
  return out;
}

describe('FakeObjectStore', () => {
  it('lets exactly one of many racing putIfAbsent calls win', async () => {
    const s = new FakeObjectStore();
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => s.putIfAbsent('k', b(`v${i}`))));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ObjectConflict);
    const winner = results.findIndex((r) => r.status === 'fulfilled');
    expect(s.peek('k')!.toString()).toBe(`v${winner}`);
  });

  it('advances putIfMatch only from the current etag, and every write gets a new etag', async () => {
    const s = new FakeObjectStore();
    const e1 = await s.putIfAbsent('m', b('one'));
    const e2 = await s.putIfMatch('m', b('one'), e1);
    expect(e2).not.toBe(e1);
    await expect(s.putIfMatch('m', b('two'), e1)).rejects.toBeInstanceOf(ObjectConflict);
    await expect(s.putIfMatch('absent', b('x'), e1)).rejects.toBeInstanceOf(ObjectConflict);
    const racers = await Promise.allSettled([s.putIfMatch('m', b('a'), e2), s.putIfMatch('m', b('b'), e2)]);
    expect(racers.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((await s.head('m'))!.size).toBe(1);
  });

  it('answers ranged reads like S3: clamped at the end, refused from past the end, null when absent', async () => {
    const s = new FakeObjectStore();
    await s.putIfAbsent('o', b('0123456789'));
    expect((await s.get('o', { offset: 2, length: 3 }))!.body.toString()).toBe('234');
    expect((await s.get('o', { offset: 8, length: 10 }))!.body.toString()).toBe('89');
    await expect(s.get('o', { offset: 10, length: 1 })).rejects.toMatchObject({ code: 'IO' });
    expect(await s.get('nope')).toBeNull();
    expect(await s.head('nope')).toBeNull();
    await s.delete('nope');
  });

  it('lists in byte order across pages, each page one call', async () => {
    const s = new FakeObjectStore({ pageSize: 2 });
    for (const k of ['j/3', 'j/1', 'x', 'j/2', 'j/10', 'jz']) await s.putIfAbsent(k, b(k));
    const before = s.counters.calls.list;
    expect(await collect(s.list('j/'))).toEqual(['j/1', 'j/10', 'j/2', 'j/3']);
    expect(s.counters.calls.list - before).toBe(3);
    expect(await collect(s.list(''))).toEqual(['j/1', 'j/10', 'j/2', 'j/3', 'jz', 'x']);
  });

  it('fails the Nth call, a seeded fraction, and everything while down', async () => {
    const s = new FakeObjectStore();
    s.failCall(2);
    await s.putIfAbsent('a', b('a'));
    await expect(s.putIfAbsent('b', b('b'))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect(s.peek('b')).toBeNull();
    await s.putIfAbsent('b', b('b'));
    s.failFraction(0.5, 7, 'get');
    let failed = 0;
    for (let i = 0; i < 200; i++) failed += (await s.get('a').then(() => 0, () => 1));
    expect(failed).toBeGreaterThan(60);
    expect(failed).toBeLessThan(140);
    await s.putIfAbsent('c', b('c'));
    s.failFraction(0);
    s.goDown();
    await expect(s.head('a')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    s.up();
    expect((await s.head('a'))!.size).toBe(1);
  });

  it('lands an ambiguous PUT and still rejects it', async () => {
    const s = new FakeObjectStore();
    s.ambiguousPuts(1);
    await expect(s.putIfAbsent('a', b('a'))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect(s.peek('a')!.toString()).toBe('a');
  });

  it('hangs calls until released', async () => {
    const s = new FakeObjectStore();
    s.hang('put');
    let done = false;
    const p = s.putIfAbsent('a', b('a')).then(() => (done = true));
    await s.head('a');
    await new Promise((r) => setTimeout(r, 10));
    expect(done).toBe(false);
    expect(s.hungCalls).toBe(1);
    s.release();
    await p;
    expect(done).toBe(true);
  });

  it('crashes after a chosen PUT and hands over only what was durable', async () => {
    const s = new FakeObjectStore();
    s.crashAfter(2);
    await s.putIfAbsent('a', b('a'));
    await s.putIfAbsent('b', b('b'));
    await expect(s.putIfAbsent('c', b('c'))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(s.get('a')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    const after = s.durable();
    expect(after.keys()).toEqual(['a', 'b']);
    expect((await after.get('b'))!.body.toString()).toBe('b');
    await after.putIfAbsent('c', b('c'));
    expect(s.peek('c')).toBeNull();
  });

  it('completes concurrent calls out of order when reordering', async () => {
    const s = new FakeObjectStore();
    s.reorder(6, 3);
    const order: number[] = [];
    await Promise.all(Array.from({ length: 10 }, (_, i) => s.putIfAbsent(`k${i}`, b('x')).then(() => order.push(i))));
    expect(order).toHaveLength(10);
    expect(order).not.toEqual([...order].sort((x, y) => x - y));
  });

  it('counts calls and bytes', async () => {
    const s = new FakeObjectStore();
    await s.putIfAbsent('a', b('abcd'));
    await s.get('a', { offset: 1, length: 2 });
    expect(s.counters.calls.putIfAbsent).toBe(1);
    expect(s.counters.calls.get).toBe(1);
    expect(s.counters.bytesWritten).toBe(4);
    expect(s.counters.bytesRead).toBe(2);
    expect(s.totalBytes).toBe(4);
  });
});
