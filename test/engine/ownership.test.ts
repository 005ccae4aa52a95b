// Who opens and closes the store (issue 11): devices and the engine only get the store's parts, so
// closing every device leaves the store open, and the served image (its one owner) closes it once.
// Device construction and the zero path read volume facts, which never walk the extent map.
import { describe, expect, it } from 'vitest';
import { ServedImage } from '../../src/control/served-image.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { B, fill, noFua, readAt } from './support.ts';

async function image(): Promise<ImageStore> {
  const store = await ImageStore.create(new MemoryStorage(), { dataBytes: 2 << 20, journalBytes: 256 << 10 });
  await store.createVolume('v', 16 * B);
  return store;
}

describe('store ownership', () => {
  it('closing every device leaves the store open; the served image closes it, once', async () => {
    const store = await image();
    const served = new ServedImage(store);
    const dev = served.engine.device('v');
    await dev.write(fill(B, 7), 0, noFua);
    await dev.close();
    await dev.close();
    // Still open: the same device (and the store) keep working after the device closed.
    await dev.write(fill(B, 8), B, noFua);
    expect((await readAt(dev, 0, 2 * B)).equals(Buffer.concat([fill(B, 7), fill(B, 8)]))).toBe(true);
    await store.commit();
    await Promise.all([served.close(), served.close()]);
    await expect(store.begin('v', 0, B, 'read')).rejects.toMatchObject({ code: 'IO' });
    await served.close();
  });

  it('volume facts match info without the costly figures, and making a device does not walk the map', async () => {
    const store = await image();
    const served = new ServedImage(store);
    await served.engine.device('v').write(fill(3 * B, 1), 0, noFua);
    const { extents, allocatedBytes, ...cheap } = store.volumes.info('v');
    expect(store.volumes.facts('v')).toEqual(cheap);
    expect(allocatedBytes).toBe(3 * B);
    expect(extents).toBe(1);
    await served.engine.resizeVolume('v', 32 * B);
    const walked = store.meta.byName.get('v')!.map;
    const entries = walked.entries.bind(walked);
    let walks = 0;
    walked.entries = () => {
      walks++;
      return entries();
    };
    const dev = served.engine.device('v');
    expect(dev.size).toBe(32 * B);
    await dev.zero(0, B, { fua: false, mayTrim: true, fast: false });
    await dev.trim(4 * B, 2 * B, { fua: false });
    expect(walks).toBe(0);
    // info() counts allocation in O(1) too (the map keeps its block count).
    expect(store.volumes.info('v').allocatedBytes).toBe(2 * B);
    expect(walks).toBe(0);
    await served.close();
  });
});
