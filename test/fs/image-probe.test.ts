// The read-only signature probe behind `iomapd serve FILE` (src/fs/image-probe.ts), on real image
// files: its copies of the superblock and journal magics and offsets must match what the store writes.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createImageFile } from '../../src/fs/image-file.ts';
import { probeImageFile } from '../../src/fs/image-probe.ts';
import { zeroFileRange } from '../support/file-bytes.ts';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-probe-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function image(name: string, blockSize: number): Promise<string> {
  const path = join(dir, name);
  const store = await createImageFile(path, { dataBytes: 1 << 20, blockSize });
  await store.createVolume('v', 1 << 20);
  await store.close();
  return path;
}

describe('probeImageFile', () => {
  it.each([4096, 16384, 65536])('block size %i: image, then damaged by copy 1, then damaged by the journal ring', async (blockSize) => {
    const path = await image(`img-${blockSize}`, blockSize);
    expect(await probeImageFile(path)).toEqual({ kind: 'image' });

    await zeroFileRange(path, 0, 8);
    const one = await probeImageFile(path);
    expect(one).toMatchObject({ kind: 'damaged', superblock: true });
    expect(one.kind === 'damaged' && one.evidence).toMatch(/copy 1 \(byte 4096\)/);

    await zeroFileRange(path, 4096, 8);
    const journalAt = Math.max(8192, blockSize);
    const ring = await probeImageFile(path);
    expect(ring).toMatchObject({ kind: 'damaged', superblock: false });
    expect(ring.kind === 'damaged' && ring.evidence).toContain(`byte ${journalAt}`);

    await zeroFileRange(path, journalAt, 4);
    expect(await probeImageFile(path)).toEqual({ kind: 'none' });
  });

  it('reads only: the file is byte for byte the same afterwards', async () => {
    const path = await image('ro', 4096);
    const before = await readFile(path);
    await probeImageFile(path);
    expect((await readFile(path)).equals(before)).toBe(true);
  });

  it('no signature: zeros, other data, empty and short files', async () => {
    for (const [name, bytes] of [['zeros', Buffer.alloc(1 << 20)], ['data', Buffer.alloc(1 << 20, 0xa5)], ['empty', Buffer.alloc(0)], ['short', Buffer.from('IOMAPD')]] as const) {
      const path = join(dir, name);
      await writeFile(path, bytes);
      expect(await probeImageFile(path), name).toEqual({ kind: 'none' });
    }
  });

  it('a missing file rejects with ENOENT (serve turns it into NOT_FOUND)', async () => {
    await expect(probeImageFile(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
