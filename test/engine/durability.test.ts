// Durability under simulated power loss (semantics §9 cases 16-21: D1-D7, D11). CrashStorage keeps
// only synced writes (plus a random drop/apply/tear of the rest) in its crash image.
import { describe, expect, it } from 'vitest';
import { ImageStore } from '../../src/fs/image-store.ts';
import { FaultStorage } from '../support/fault-storage.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { PassThroughStorage } from '../support/pass-through-storage.ts';
import { B, fill, fua, GARBAGE, IMAGE_BYTES, makeRig, makeUnwritten, noFua, readAt, reopenAfterCrash, wrap } from './support.ts';

const SEEDS = Number(process.env.IOMAPD_ENGINE_SEEDS ?? 12);

/** Records the order of completed writes and syncs (semantics §9 harness: the instrumented backend). */
class RecordingStorage extends PassThroughStorage {
  readonly events: Array<{ op: 'write'; offset: number; length: number } | { op: 'sync' }> = [];
  recording = false;
  override async write(buf: Buffer, offset: number): Promise<void> {
    await this.inner.write(buf, offset);
    if (this.recording) this.events.push({ op: 'write', offset, length: buf.length });
  }
  override async sync(): Promise<void> {
    // A sync covers the writes completed when it starts.
    if (this.recording) this.events.push({ op: 'sync' });
    await this.inner.sync();
  }
}

const uniform = (buf: Buffer, ...allowed: number[]): boolean => {
  for (let s = 0; s < buf.length; s += 512) {
    const v = buf[s]!;
    if (!allowed.includes(v) || !buf.subarray(s, s + 512).every((x) => x === v)) return false;
  }
  return true;
};

describe('engine durability', () => {
  it('case 16: a FUA pure overwrite survives a crash with no FLUSH, through the shortcut, with no journal commit', async () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const rig = await makeRig({ crash: true, seed });
      const dev = rig.dev();
      await dev.write(fill(2 * B, 0x10), 0, noFua);
      await dev.flush();
      const journalUsed = rig.store.stats().journalUsed;
      await dev.write(fill(B + 512, 0x16), 512, fua);
      expect(dev.counters.fuaShortcuts).toBe(1);
      expect(dev.counters.journalCommits).toBe(1); // the FLUSH only
      expect(rig.store.stats().journalUsed).toBe(journalUsed);
      const after = await reopenAfterCrash(rig);
      const got = await readAt(after.dev(), 0, 2 * B);
      expect(got.subarray(512, B + 1024).every((x) => x === 0x16)).toBe(true);
      expect(got.subarray(0, 512).every((x) => x === 0x10)).toBe(true);
    }
  });

  it('case 17: a FUA write into a hole or unwritten extent survives a crash (data and conversion committed)', async () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const rig = await makeRig({ crash: true, seed });
      const dev = rig.dev();
      await makeUnwritten(dev, 8 * B, B);
      await dev.write(fill(512, 0x17), 2 * B + 512, fua);
      await dev.write(fill(1024, 0x71), 8 * B, fua);
      expect(dev.counters.fuaShortcuts).toBe(0);
      const after = (await reopenAfterCrash(rig)).dev();
      const a = await readAt(after, 2 * B, B);
      expect(a.subarray(512, 1024).every((x) => x === 0x17)).toBe(true);
      expect(a.subarray(0, 512).every((x) => x === 0) && a.subarray(1024).every((x) => x === 0)).toBe(true);
      const b = await readAt(after, 8 * B, B);
      expect(b.subarray(0, 1024).every((x) => x === 0x71) && b.subarray(1024).every((x) => x === 0)).toBe(true);
    }
  });

  it('case 18: a FUA write over a pure-overwrite extent and an unwritten one takes the full path as a whole', async () => {
    const rig = await makeRig({ crash: true });
    const dev = rig.dev();
    await dev.write(fill(B, 1), 0, noFua);
    await dev.flush();
    await dev.write(fill(2 * B, 0x18), 0, fua);
    expect(dev.counters.fuaShortcuts).toBe(0);
    expect(dev.counters.journalCommits).toBe(2);
    const got = await readAt((await reopenAfterCrash(rig)).dev(), 0, 2 * B);
    expect(got.every((x) => x === 0x18)).toBe(true);
  });

  it('case 19: a write then FLUSH survives; without FLUSH the range reads old data or zeros, never garbage', async () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const rig = await makeRig({ crash: true, seed });
      const dev = rig.dev();
      await dev.write(fill(4 * B, 0x19), 0, noFua);
      await dev.flush();
      await dev.write(fill(4 * B, 0x91), 2 * B, noFua); // half overwrite, half hole fill, no FLUSH
      const got = await readAt((await reopenAfterCrash(rig)).dev(), 0, 6 * B);
      expect(got.subarray(0, 2 * B).every((x) => x === 0x19)).toBe(true);
      expect(uniform(got.subarray(2 * B, 4 * B), 0x19, 0x91)).toBe(true);
      expect(uniform(got.subarray(4 * B, 6 * B), 0, 0x91)).toBe(true);
    }
  });

  it('case 20: no conversion commit precedes the sync of its data: power loss at every step of a FUA hole fill reads zeros or the data', async () => {
    for (let crashAt = 0; crashAt < 12; crashAt++) {
      const rig = await makeRig({ crash: true, seed: crashAt + 1 });
      const dev = rig.dev();
      rig.crash!.armCrash(crashAt);
      await dev.write(fill(B + 1024, 0x20), B - 512, fua).catch(() => {});
      const got = await readAt((await reopenAfterCrash(rig)).dev(), 0, 4 * B);
      expect(got.subarray(0, B - 512).every((x) => x === 0)).toBe(true);
      // Each block is either still a hole (zeros) or converted with every byte valid.
      const first = got.subarray(0, B);
      const second = got.subarray(B, 2 * B);
      const third = got.subarray(2 * B, 3 * B);
      expect(first.every((x) => x === 0) || first.subarray(B - 512).every((x) => x === 0x20)).toBe(true);
      expect(uniform(second, 0, 0x20)).toBe(true);
      expect(third.every((x) => x === 0) || (third.subarray(0, 512).every((x) => x === 0x20) && third.subarray(512).every((x) => x === 0))).toBe(true);
    }
  });

  it('case 20b: on the recording backend, no journal or superblock write ever follows a data write that no sync has covered yet', async () => {
    const rec = new RecordingStorage(new MemoryStorage(Buffer.alloc(IMAGE_BYTES, GARBAGE)));
    const faults = new FaultStorage(rec);
    const store = await ImageStore.create(faults, { dataBytes: 2 << 20, journalBytes: 256 << 10 });
    await store.createVolume('v', 64 * B);
    await store.createVolume('tiny', 1024);
    await store.commit();
    const rig = wrap(store, faults, null);
    const dev = rig.dev();
    rec.recording = true;
    // One request at a time, so every data write still unsynced at a commit belongs to a request
    // whose conversion or remap record that commit may carry (D6).
    await dev.write(fill(B + 1024, 1), B - 512, fua); // hole fill with pads: conversion
    await makeUnwritten(dev, 8 * B, 2 * B);
    await dev.write(fill(512, 2), 8 * B + 512, fua); // into unwritten: conversion
    await dev.write(fill(B, 3), 12 * B, noFua);
    await dev.flush(); // FLUSH: data then commit
    await dev.write(fill(512, 4), 12 * B, fua); // pure overwrite: a data sync, no commit
    await rig.engine.snapshot('v', 's');
    await dev.write(fill(512, 5), 12 * B + 1024, fua); // COW with copy-up: remap
    await dev.write(fill(2 * B, 6), 8 * B, noFua);
    await dev.trim(B, B, fua); // frees a block: a commit after unsynced writes of others
    await rig.dev('tiny').write(fill(512, 7), 0, noFua);
    await rig.store.resizeVolume('tiny', 2 * B); // uninline: block written, then the record
    await dev.flush();
    const { dataOffset } = store.superblock;
    let unsynced = 0;
    let metadataWrites = 0;
    for (const [i, e] of rec.events.entries()) {
      if (e.op === 'sync') unsynced = 0;
      else if (e.offset >= dataOffset) unsynced++;
      else {
        metadataWrites++;
        expect(unsynced, `event ${i}: a write at ${e.offset} (journal or superblock) with ${unsynced} data writes not yet synced`).toBe(0);
      }
    }
    expect(metadataWrites).toBeGreaterThanOrEqual(6);
    expect(dev.counters.fuaShortcuts).toBe(1);
  });

  it('case 21: a COW remap or TRIM lost in a crash leaves the old owner intact; pending-free blocks are not reused', async () => {
    for (let seed = 1; seed <= SEEDS; seed++) {
      const rig = await makeRig({ crash: true, seed });
      const dev = rig.dev();
      await dev.write(fill(2 * B, 0x21), 0, noFua);
      await rig.engine.snapshot('v', 'snap');
      await dev.write(fill(B, 0x12), 0, noFua); // COW, not flushed
      const trimmed = rig.store.lookup('v', B).physical;
      await dev.trim(B, B, noFua); // drops v's reference; the snapshot still holds it
      await dev.write(fill(2 * B, 0x33), 10 * B, noFua);
      const fresh = [rig.store.lookup('v', 10 * B).physical, rig.store.lookup('v', 11 * B).physical];
      expect(fresh).not.toContain(trimmed);
      const after = await reopenAfterCrash(rig);
      expect((await readAt(after.dev('snap'), 0, 2 * B)).every((x) => x === 0x21)).toBe(true);
      const v = await readAt(after.dev(), 0, 2 * B);
      expect(uniform(v.subarray(0, B), 0x21, 0x12)).toBe(true);
      expect(uniform(v.subarray(B), 0x21, 0)).toBe(true);
      expect(after.store.verify().errors).toEqual([]);
    }
  });

  it('case 21b: a block freed by TRIM is not handed out before the free commits', async () => {
    const rig = await makeRig({ crash: true, dataBytes: 8 * B, volumeBytes: 64 * B });
    const dev = rig.dev();
    let blocks = 0;
    while (await dev.write(fill(B, 1), blocks * B, noFua).then(() => true, () => false)) blocks++;
    await dev.flush();
    expect(blocks).toBeGreaterThan(1);
    await expect(dev.write(fill(B, 2), 40 * B, noFua)).rejects.toMatchObject({ code: 'NO_SPACE' });
    await dev.trim(0, B, noFua);
    await expect(dev.write(fill(B, 2), 40 * B, noFua)).rejects.toMatchObject({ code: 'NO_SPACE' });
    await dev.flush();
    await dev.write(fill(B, 2), 40 * B, noFua);
  });
});
