// Writes by extent state (semantics §9 cases 4-10 at engine level: E4-E10, Z2, Z6, C3).
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { B, fill, imageBytes, makeRig, makeUnwritten, noFua, readAt } from './support.ts';

const CONCURRENT_ROUNDS = Number(process.env.IOMAPD_ENGINE_ROUNDS ?? 1000);

const allocated = (rig: Awaited<ReturnType<typeof makeRig>>): number => rig.store.stats().dataBlocks - rig.store.stats().freeBlocks;

describe('engine writes', () => {
  it('case 4: a full-block write into a hole reads back, becomes mapped and allocates one block', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    const before = allocated(rig);
    await dev.write(fill(B, 0x44), 3 * B, noFua);
    expect((await readAt(dev, 3 * B, B)).every((x) => x === 0x44)).toBe(true);
    expect(rig.store.lookup('v', 3 * B).type).toBe('mapped');
    expect(allocated(rig)).toBe(before + 1);
  });

  it('case 5: a 512-byte write into a hole or unwritten block leaves the rest zero, in the image too', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await makeUnwritten(dev, 5 * B, B);
    for (const at of [2 * B + 1024, 5 * B + 3584]) {
      await dev.write(fill(512, 0x55), at, noFua);
      const block = Math.floor(at / B) * B;
      const got = await readAt(dev, block, B);
      const img = await imageBytes(rig, 'v', block, B);
      for (const buf of [got, img]) {
        for (let i = 0; i < B; i++) expect(buf[i]).toBe(block + i >= at && block + i < at + 512 ? 0x55 : 0);
      }
    }
    expect(dev.counters.padBytes).toBe(2 * (B - 512));
  });

  it('case 6: a sub-block write into a written exclusive block keeps the rest, with no allocation and no remap', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await dev.write(fill(B, 0x61), 0, noFua);
    const phys = rig.store.lookup('v', 0).physical;
    const before = allocated(rig);
    await dev.write(fill(512, 0x66), 1024, noFua);
    const got = await readAt(dev, 0, B);
    for (let i = 0; i < B; i++) expect(got[i]).toBe(i >= 1024 && i < 1536 ? 0x66 : 0x61);
    expect(rig.store.lookup('v', 0).physical).toBe(phys);
    expect(allocated(rig)).toBe(before);
    expect(dev.counters.padBytes).toBe(0);
  });

  it(`case 7: concurrent 512-byte writes to every sector of one block all survive (unwritten and shared, ${CONCURRENT_ROUNDS} rounds)`, async () => {
    const rig = await makeRig({ dataBytes: 3 << 20 });
    const dev = rig.dev();
    for (let round = 0; round < CONCURRENT_ROUNDS; round++) {
      const block = (round % 2) * B;
      if (round % 2 === 0) {
        await dev.trim(block, B, noFua);
        await makeUnwritten(dev, block, B);
      } else {
        await dev.write(fill(B, 0x11), block, noFua);
        await rig.engine.snapshot('v', `s${round}`);
      }
      const writes = [];
      for (let s = 0; s < B / 512; s++) writes.push(dev.write(fill(512, (round + s + 1) & 0xff), block + s * 512, noFua));
      await Promise.all(writes);
      const got = await readAt(dev, block, B);
      for (let s = 0; s < B / 512; s++) expect(got[s * 512]).toBe((round + s + 1) & 0xff);
      if (round % 2 === 1) await rig.store.deleteVolume(`s${round}`);
    }
  });

  it('case 8: a write to a shared extent goes to new space; the clone sees it, the origin does not; the old block is exclusive again', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await dev.write(fill(2 * B, 0x81), 0, noFua);
    await rig.engine.clone('v', 'c');
    expect(rig.store.lookup('v', 0).shared).toBe(true);
    const old = rig.store.lookup('v', 0).physical;
    const clone = rig.dev('c');
    await clone.write(fill(2 * B, 0x88), 0, noFua);
    expect((await readAt(clone, 0, 2 * B)).every((x) => x === 0x88)).toBe(true);
    expect((await readAt(dev, 0, 2 * B)).every((x) => x === 0x81)).toBe(true);
    expect(rig.store.lookup('c', 0).physical).not.toBe(old);
    await dev.flush(); // the store drops the old reference once the remap is durable
    expect(rig.store.lookup('v', 0)).toMatchObject({ physical: old, shared: false });
    expect(clone.counters.cowCopies).toBe(1);
    expect(rig.store.verify().errors).toEqual([]);
  });

  it('case 9: a sub-block write to a shared block copies up the snapshot bytes around it', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    const pattern = Buffer.alloc(B);
    for (let i = 0; i < B; i++) pattern[i] = (i * 7) & 0xff;
    await dev.write(pattern, B, noFua);
    await rig.engine.snapshot('v', 'snap');
    await dev.write(fill(512, 0x99), B + 2048, noFua);
    const got = await readAt(dev, B, B);
    for (let i = 0; i < B; i++) expect(got[i]).toBe(i >= 2048 && i < 2560 ? 0x99 : pattern[i]);
    expect((await readAt(rig.dev('snap'), B, B)).equals(pattern)).toBe(true);
    expect(dev.counters.copyUpBytes).toBe(B - 512);
    expect(rig.dev('snap').readOnly).toBe(true);
  });

  it('case 10: inline writes past the current data zero-fill the gap; growing past the cap uninlines and reads back', async () => {
    const rig = await makeRig();
    await rig.store.createVolume('tiny', 1024);
    const tiny = rig.dev('tiny');
    await tiny.write(fill(512, 0xa0), 512, noFua);
    expect((await readAt(tiny, 0, 512)).every((x) => x === 0)).toBe(true);
    await tiny.write(fill(512, 0xa5), 0, { fua: true });
    expect(tiny.counters.fuaShortcuts).toBe(0); // inline is metadata: never the shortcut
    await rig.store.resizeVolume('tiny', 4 * B); // uninlines (the store's only way past the cap)
    const grown = new Engine(rig.store).device('tiny'); // devices have a fixed size: a new one after resize
    const got = await readAt(grown, 0, 4 * B);
    expect(got.subarray(0, 512).every((x) => x === 0xa5)).toBe(true);
    expect(got.subarray(512, 1024).every((x) => x === 0xa0)).toBe(true);
    expect(got.subarray(1024).every((x) => x === 0)).toBe(true);
    await grown.write(fill(512, 0xaa), B + 512, noFua);
    expect((await readAt(grown, B + 512, 512)).every((x) => x === 0xaa)).toBe(true);
  });

  it('case 10b: an inline record shorter than its volume (corrupt length) fails READ and WRITE with EIO and changes nothing', async () => {
    const rig = await makeRig();
    await rig.store.createVolume('tiny', 2048);
    const tiny = rig.dev('tiny');
    await tiny.write(fill(2048, 0xab), 0, noFua);
    // The mapper hands out a record cut short, as a corrupt inline length would decode.
    const mapper = rig.store.mapper;
    const begin = mapper.begin.bind(mapper);
    mapper.begin = async (...args: Parameters<typeof begin>) => {
      const m = await begin(...args);
      if (m.type === 'inline') Object.assign(m, { inline: m.inline!.subarray(0, 1000) });
      return m;
    };
    await expect(readAt(tiny, 0, 2048)).rejects.toMatchObject({ code: 'IO' });
    await expect(readAt(tiny, 1024, 1024)).rejects.toMatchObject({ code: 'IO' });
    await expect(tiny.write(fill(512, 0xcd), 512, noFua)).rejects.toMatchObject({ code: 'IO' });
    mapper.begin = begin;
    expect((await readAt(tiny, 0, 2048)).every((x) => x === 0xab)).toBe(true);
    expect(rig.store.verify().errors).toEqual([]);
  });
});
