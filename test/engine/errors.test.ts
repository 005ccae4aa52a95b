// Errors and lifecycle (semantics §9 cases 24-28: L1-L7, L11) over fault-injecting storage.
import { describe, expect, it } from 'vitest';
import { B, fill, makeRig, makeUnwritten, noFua, readAt, settleTicks } from './support.ts';

const FAILURES = Number(process.env.IOMAPD_ENGINE_FAILURES ?? 1000);

describe('engine errors', () => {
  it('case 24: a backing write error fails the request, issues nothing after it, and leaves unwritten space reading zeros', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await makeUnwritten(dev, 0, 16 * B);
    const before = rig.faults.counts.write;
    rig.faults.failOn({ op: 'write', nth: 1, errno: 'EIO' });
    // 6 MiB of sub-I/Os of 1 MiB with 4 in flight: the failure of the first stops the rest.
    const err = await dev.write(fill(16 * B, 0x24), 0, noFua).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'IO' });
    expect(rig.faults.counts.write - before).toBe(1);
    rig.faults.clearFaults();
    expect((await readAt(dev, 0, 16 * B)).every((x) => x === 0)).toBe(true);
    expect(rig.store.lookup('v', 0).type).toBe('unwritten');
    expect(dev.counters.errors).toBe(1);
  });

  it('case 24b: the first error wins and no sub-I/O starts after it is recorded', async () => {
    const rig = await makeRig({ dataBytes: 16 << 20, volumeBytes: 8 << 20 });
    const dev = rig.dev();
    rig.faults.failOn({ op: 'write', nth: 2, errno: 'EIO' });
    rig.faults.failOn({ op: 'write', nth: 3, errno: 'ENOSPC' });
    const before = rig.faults.counts.write;
    const err = await dev.write(fill(8 << 20, 1), 0, noFua).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'IO' });
    expect(rig.faults.counts.write - before).toBeLessThanOrEqual(4); // the window, never all 8
    rig.faults.clearFaults();
    expect((await readAt(dev, 0, 1 << 20)).every((x) => x === 0)).toBe(true);
    expect(rig.store.lookup('v', 0).type).toBe('hole'); // the fill was rolled back
  });

  it('case 25: a backing read error fails the read', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await dev.write(fill(B, 1), 0, noFua);
    rig.faults.failOn({ op: 'read', nth: 1, errno: 'EIO' });
    await expect(readAt(dev, 0, B)).rejects.toMatchObject({ code: 'IO' });
    expect(dev.counters.clientBytesRead).toBe(0);
  });

  it('case 26: a failure at the first mapping does no backing I/O, pads nothing and allocates nothing', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await rig.store.deleteVolume('v'); // the mapper now fails at the first lookup
    const free = rig.store.stats().freeBlocks;
    const writes = rig.faults.counts.write;
    await expect(dev.write(fill(512, 1), 512, noFua)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(rig.faults.counts.write).toBe(writes);
    expect(dev.counters.padBytes).toBe(0);
    expect(rig.store.stats().freeBlocks).toBe(free);
  });

  it(`case 27: on a full store pure overwrites and unwritten writes succeed, hole fills and COW get NO_SPACE, and space returns to baseline after ${FAILURES} failures`, async () => {
    const rig = await makeRig({ dataBytes: 16 * B, volumeBytes: 64 * B });
    const dev = rig.dev();
    await makeUnwritten(dev, 0, B);
    await dev.write(fill(B, 1), B, noFua);
    let n = 2;
    while (await dev.write(fill(B, 2), n * B, noFua).then(() => true, () => false)) n++;
    await rig.engine.clone('v', 'c');
    const clone = rig.dev('c');
    await dev.flush();
    const baseline = rig.store.stats();
    for (let i = 0; i < FAILURES; i++) {
      await expect(dev.write(fill(512, 3), 60 * B, noFua)).rejects.toMatchObject({ code: 'NO_SPACE' });
      await expect(clone.write(fill(512, 3), B, noFua)).rejects.toMatchObject({ code: 'NO_SPACE' });
    }
    const after = rig.store.stats();
    expect([after.freeBlocks, after.reservedBlocks, after.pendingFreeBlocks]).toEqual([baseline.freeBlocks, baseline.reservedBlocks, baseline.pendingFreeBlocks]);
    expect(dev.counters.allocationFailures).toBe(FAILURES + 1); // + the one that found the store full
    await rig.store.deleteVolume('c');
    await dev.flush();
    await dev.write(fill(512, 4), B + 512, noFua); // now exclusive again: pure overwrite
    await dev.write(fill(512, 5), 512, noFua); // unwritten: already allocated (L11)
    expect((await readAt(dev, 0, 1024)).subarray(512).every((x) => x === 5)).toBe(true);
  });

  it('case 28: zero-filled pieces completing at once do not finish a read before its data arrives', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await dev.write(fill(B, 0x28), 3 * B, noFua);
    const got = await readAt(dev, 0, 8 * B); // hole pieces settle synchronously, the mapped one later
    expect(got.subarray(3 * B, 4 * B).every((x) => x === 0x28)).toBe(true);
    expect(got.subarray(0, 3 * B).every((x) => x === 0)).toBe(true);
  });

  it('case 28b: a request whose first sub-I/O completes at once is not finished until its held sub-I/Os complete (READ and WRITE)', async () => {
    const MiB = 1 << 20;
    const rig = await makeRig({ gated: true, dataBytes: 16 * MiB, volumeBytes: 8 * MiB });
    const dev = rig.dev();
    const gates = rig.gates!;
    const { dataOffset } = rig.store.superblock;
    // WRITE of 3 MiB + 1 KiB into a hole: the first 1 MiB piece lands at once, the others are held.
    let dataWrites = 0;
    const heldWrites = gates.hold('write', (offset) => offset >= dataOffset && dataWrites++ >= 1);
    let written = false;
    const writing = dev.write(fill(3 * MiB + 1024, 0x28), 0, noFua).then(() => void (written = true));
    await settleTicks();
    expect(heldWrites.held).toBeGreaterThan(0);
    expect(written).toBe(false);
    expect(rig.store.lookup('v', 0).type).toBe('unwritten'); // no conversion before the rest landed
    heldWrites.release();
    await writing;
    expect(rig.store.lookup('v', 0).type).toBe('mapped');
    expect((await readAt(dev, 0, 3 * MiB + 1024)).every((x) => x === 0x28)).toBe(true);

    // READ of hole | mapped: the hole piece is zero-filled synchronously, the mapped read is held.
    await dev.trim(0, MiB, noFua);
    const heldReads = gates.hold('read', (offset) => offset >= dataOffset);
    let read: Buffer | null = null;
    const reading = readAt(dev, 0, 3 * MiB).then((b) => void (read = b));
    await settleTicks();
    expect(heldReads.held).toBeGreaterThan(0);
    expect(read).toBe(null);
    heldReads.release();
    await reading;
    const got = read! as Buffer;
    expect(got.subarray(0, MiB).every((x) => x === 0)).toBe(true);
    expect(got.subarray(MiB).every((x) => x === 0x28)).toBe(true);
  });
});
