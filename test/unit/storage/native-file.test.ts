// What the native file operations do on this machine's filesystem: the OFD lock (per open file,
// so a second open in this process is refused; dropped on close), hole punching, SEEK_DATA /
// SEEK_HOLE; and how FileStorage and PoisonLatch build on them.
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FileStorage } from '../../../src/storage/file-storage.ts';
import { nativeFile } from '../../../src/storage/native-file.ts';
import { PoisonLatch } from '../../../src/storage/poison-latch.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-native-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

describe('nativeFile', () => {
  it('locks per open file: a second open is refused, even a shared probe, until the first closes', () => {
    const path = join(dir, 'lock');
    const a = openSync(path, 'w+');
    const b = openSync(path, 'r+');
    const probe = openSync(path, 'r');
    expect(nativeFile.tryLock(a)).toBe(true);
    expect(nativeFile.tryLock(b)).toBe(false);
    expect(nativeFile.tryLock(probe, true)).toBe(false);
    closeSync(a);
    expect(nativeFile.tryLock(b)).toBe(true);
    nativeFile.unlock(b);
    expect(nativeFile.tryLock(probe, true)).toBe(true);
    closeSync(b);
    closeSync(probe);
  });

  it('punches holes that read as zeroes and free space, and finds data and holes with lseek', async () => {
    const path = join(dir, 'sparse');
    const fd = openSync(path, 'w+');
    try {
      writeSync(fd, Buffer.alloc(MiB, 7), 0, MiB, 0);
      await truncate(path, 4 * MiB);
      expect(await nativeFile.seekData(fd, 0)).toBe(0);
      expect(await nativeFile.seekHole(fd, 0)).toBe(MiB);
      expect(await nativeFile.seekData(fd, MiB)).toBeNull(); // ENXIO: only a hole follows
      const before = (await stat(path)).blocks;
      await nativeFile.punchHole(fd, 256 * KiB, 512 * KiB);
      expect((await stat(path)).blocks).toBe(before - (512 * KiB) / 512);
      expect((await stat(path)).size).toBe(4 * MiB);
      expect(await nativeFile.seekHole(fd, 0)).toBe(256 * KiB);
      expect(await nativeFile.seekData(fd, 256 * KiB)).toBe(768 * KiB);
    } finally {
      closeSync(fd);
    }
  });
});

describe('FileStorage on the native operations', () => {
  it('describes allocation in bounded runs, and says null where lseek cannot tell', async () => {
    const s = await FileStorage.open(join(dir, 'f'), { create: true });
    await s.resize(MiB);
    for (let i = 0; i < 10; i++) await s.write(Buffer.alloc(4 * KiB, 1), i * 64 * KiB);
    expect(await s.extents(0, MiB, 3)).toEqual([
      { length: 4 * KiB, data: true },
      { length: 60 * KiB, data: false },
      { length: 4 * KiB, data: true },
    ]);
    expect(await s.extents(10 * 64 * KiB, 100 * KiB, 32)).toEqual([{ length: 100 * KiB, data: false }]);
    vi.spyOn(nativeFile, 'seekData').mockRejectedValue(Object.assign(new Error('EINVAL'), { code: 'EINVAL' }));
    expect(await s.extents(0, MiB, 32)).toBeNull();
    await s.close();
  });

  it('takes its gate modes from its options; each storage has its own gates', async () => {
    const a = await FileStorage.open(join(dir, 'a'), { create: true, inline: { reads: 'never', writes: 'always' } });
    const b = await FileStorage.open(join(dir, 'b'), { create: true });
    expect([a.gates.reads.mode, a.gates.writes.mode]).toEqual(['never', 'always']);
    expect([b.gates.reads.mode, b.gates.writes.mode]).toEqual(['auto', 'auto']);
    await a.write(Buffer.alloc(4 * KiB, 1), 0);
    expect(a.gates.writes.inline).toBe(1);
    expect(b.gates.writes.inline + b.gates.writes.pooled).toBe(0);
    expect(a.readNow(Buffer.alloc(4 * KiB), 0)).toBe(false);
    await a.close();
    await b.close();
  });

  it('PoisonLatch refuses to punch once poisoned, and punches through while healthy', async () => {
    const file = await FileStorage.open(join(dir, 'p'), { create: true });
    await file.resize(MiB);
    const latch = new PoisonLatch(file);
    const punches = vi.spyOn(nativeFile, 'punchHole');
    await latch.punchHole!(0, 64 * KiB);
    expect(punches).toHaveBeenCalledTimes(1);
    latch.poison(new Error('EIO: simulated'));
    await expect(latch.punchHole!(0, 64 * KiB)).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
    expect(punches).toHaveBeenCalledTimes(1);
    await latch.close();
  });
});
