// GroupSync: overlapping callers share fdatasyncs, and no caller is answered by a sync that
// started before its writes completed.
import { describe, expect, it } from 'vitest';
import { GroupSync } from '../../../src/storage/group-sync.ts';

function controlledSync() {
  const calls: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  const sync = () => new Promise<void>((resolve, reject) => calls.push({ resolve, reject }));
  return { calls, sync };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('GroupSync', () => {
  it('lets callers covered by the running sync share it', async () => {
    const { calls, sync } = controlledSync();
    const g = new GroupSync(sync);
    g.noteWrite();
    const a = g.sync();
    const b = g.sync();
    expect(calls).toHaveLength(1);
    calls[0]!.resolve();
    await Promise.all([a, b]);
    expect(g.unsynced).toBe(false);
  });

  it('queues one shared sync for callers whose writes completed after the running one started', async () => {
    const { calls, sync } = controlledSync();
    const g = new GroupSync(sync);
    g.noteWrite();
    const a = g.sync();
    g.noteWrite();
    const b = g.sync();
    const c = g.sync();
    expect(calls).toHaveLength(1);
    let bDone = false;
    void b.then(() => (bDone = true));
    calls[0]!.resolve();
    await a;
    await tick();
    expect(bDone).toBe(false);
    expect(calls).toHaveLength(2);
    calls[1]!.resolve();
    await Promise.all([b, c]);
    expect(calls).toHaveLength(2);
    expect(g.unsynced).toBe(false);
  });

  it('rejects every caller of a failed sync and still runs the queued one', async () => {
    const { calls, sync } = controlledSync();
    const g = new GroupSync(sync);
    g.noteWrite();
    const a = g.sync();
    g.noteWrite();
    const b = g.sync();
    calls[0]!.reject(new Error('EIO'));
    await expect(a).rejects.toThrow('EIO');
    await tick();
    expect(calls).toHaveLength(2);
    calls[1]!.resolve();
    await b;
  });

  it('counts a sync done elsewhere through markSynced', () => {
    const g = new GroupSync(async () => {});
    g.noteWrite();
    g.noteWrite();
    const mark = g.completed;
    g.noteWrite();
    g.markSynced(mark);
    expect(g.unsynced).toBe(true);
    g.markSynced(g.completed);
    expect(g.unsynced).toBe(false);
  });
});
