// The object image as the daemon and control channel use an open image: both backends provide
// ServableImage, and ServedImage (engine, volumes, stats, close) works over an object image as it
// does over a file image.
import { describe, expect, it } from 'vitest';
import { ServedImage } from '../../../src/control/served-image.ts';
import { ImageStore } from '../../../src/fs/image-store.ts';
import { type ServableImage, checkObjectImageStore, createObjectImage, openObjectImage } from '../../../src/fs/object/object-image.ts';
import { MemoryStorage } from '../../../src/storage/memory-storage.ts';
import { FakeObjectStore } from '../../support/fake-object-store.ts';
import { SMALL } from './helpers.ts';

const MiB = 1 << 20;

describe('object image wiring', () => {
  it('is a ServableImage like a file image', async () => {
    const file: ServableImage = await ImageStore.create(new MemoryStorage(), { dataBytes: 8 * MiB });
    const object: ServableImage = await createObjectImage(new FakeObjectStore(), { dataBytes: 8 * MiB, ...SMALL });
    for (const image of [file, object]) {
      await image.createVolume('v', MiB);
      expect(image.listVolumes().map((v) => v.name)).toEqual(['v']);
      expect(image.stats().volumes).toBe(1);
      await image.close();
    }
  });

  it('serves through ServedImage: engine writes, FLUSH, stats, close; a new host reads them', async () => {
    const bucket = new FakeObjectStore();
    const image = await createObjectImage(bucket, { dataBytes: 8 * MiB, ...SMALL });
    const served = new ServedImage(image);
    await served.volumes.create('v', MiB);
    const dev = served.engine.device('v');
    await dev.write(Buffer.alloc(8192, 0x5a), 4096, { fua: false });
    await dev.write(Buffer.alloc(512, 0x33), 16384 + 512, { fua: true });
    await dev.flush();
    const st = served.stats();
    expect(st.volumes).toBe(1);
    expect(st.uncommittedOps).toBe(0);
    expect(st.blockSize).toBe(4096);
    await served.close();
    expect((await checkObjectImageStore(bucket)).errors).toEqual([]);

    const again = await openObjectImage(bucket, { ...SMALL, readOnly: true });
    const reader = new ServedImage(again);
    const buf = Buffer.alloc(20480);
    await reader.engine.device('v').read(buf, 0);
    const want = Buffer.alloc(20480);
    want.fill(0x5a, 4096, 12288);
    want.fill(0x33, 16896, 17408);
    expect(buf.equals(want)).toBe(true);
    await reader.close();
  });
});
