// What only the raw file device does: opening and creating files, durability through fdatasync,
// refusing writes after a failed sync, hole punching with its fallback, and error mapping.
// Failures are injected by spying on the FileHandle prototype, which every handle shares (datasync),
// on fdIo (the positional reads and writes) and on nativeFile (hole punching, SEEK_DATA).
import { execFile as execFileCb } from 'node:child_process';
import { chmod, open, readFile, readlink, stat, truncate, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { RawFileDevice } from '../../../src/devices/raw-file-device.ts';
import { isIomapdError } from '../../../src/util/errors.ts';
import { nativeFile } from '../../../src/storage/native-file.ts';
import { fdIo } from '../../../src/util/fd-io.ts';
import { KiB, MiB, isAllZero, makeTempDir, pattern } from './device-fixtures.ts';

const execFile = promisify(execFileCb);

let temp: { dir: string; remove: () => Promise<void> };
let fileHandleProto: FileHandle;
const opened: RawFileDevice[] = [];

beforeAll(async () => {
  temp = await makeTempDir();
  const probe = await open(`${temp.dir}/probe`, 'w');
  fileHandleProto = Object.getPrototypeOf(probe) as FileHandle;
  await probe.close();
});
afterAll(async () => {
  await temp.remove();
});
afterEach(async () => {
  vi.restoreAllMocks();
  for (const device of opened.splice(0)) await device.close();
});

let fileNumber = 0;
function freshPath(): string {
  fileNumber++;
  return `${temp.dir}/disk-${fileNumber}.img`;
}

async function openDevice(path: string, options: Parameters<typeof RawFileDevice.open>[1]): Promise<RawFileDevice> {
  const device = await RawFileDevice.open(path, options);
  opened.push(device);
  return device;
}

async function createDevice(size = MiB, extra: Partial<Parameters<typeof RawFileDevice.open>[1]> = {}) {
  const path = freshPath();
  const device = await openDevice(path, { readOnly: false, createSize: size, ...extra });
  return { path, device };
}

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected`), { code });
}

/** Rejects with the IomapdError code the promise failed with (or 'resolved'). */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (err) {
    if (isIomapdError(err)) return err.code;
    throw err;
  }
}

async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

describe('RawFileDevice.open', () => {
  it('creates a missing file sparse, with mode 0600, at the size asked', async () => {
    const { path, device } = await createDevice(64 * MiB);
    const info = await stat(path);
    expect(info.size).toBe(64 * MiB);
    expect(info.blocks).toBe(0);
    expect(info.mode % 0o1000).toBe(0o600);
    expect(device.size).toBe(64 * MiB);
  });

  it('opens an existing file as it is, ignoring createSize', async () => {
    const path = freshPath();
    await writeFile(path, pattern(8 * KiB, 1));
    const device = await openDevice(path, { readOnly: false, createSize: MiB });
    expect(device.size).toBe(8 * KiB);
    const back = Buffer.alloc(8 * KiB);
    await device.read(back, 0);
    expect(back.equals(pattern(8 * KiB, 1))).toBe(true);
  });

  it('serves a size that is not a multiple of 512 rounded down, leaving the tail alone', async () => {
    const path = freshPath();
    await writeFile(path, pattern(4 * KiB + 100, 2));
    const device = await openDevice(path, { readOnly: false });
    expect(device.size).toBe(4 * KiB);
    await device.write(Buffer.alloc(4 * KiB), 0, { fua: true });
    const file = await readFile(path);
    expect(file.length).toBe(4 * KiB + 100);
    expect(file.subarray(4 * KiB).equals(pattern(4 * KiB + 100, 2).subarray(4 * KiB))).toBe(true);
  });

  it('refuses what it cannot serve', async () => {
    const dirPath = temp.dir;
    const fifo = `${temp.dir}/fifo`;
    await execFile('mkfifo', [fifo]);
    const cases: [string, Parameters<typeof RawFileDevice.open>[1], string][] = [
      [freshPath(), { readOnly: false }, 'NOT_FOUND'],
      [`${temp.dir}/no-such-dir/disk.img`, { readOnly: false, createSize: MiB }, 'NOT_FOUND'],
      [freshPath(), { readOnly: true, createSize: MiB }, 'BAD_ARGUMENT'],
      [freshPath(), { readOnly: false, createSize: 1000 }, 'BAD_ARGUMENT'],
      [freshPath(), { readOnly: false, createSize: 0 }, 'BAD_ARGUMENT'],
      [freshPath(), { readOnly: false, createSize: MiB, punchMinLength: -1 }, 'BAD_ARGUMENT'],
      [dirPath, { readOnly: false }, 'BAD_ARGUMENT'],
      [fifo, { readOnly: true }, 'BAD_ARGUMENT'], // and does not hang opening it
    ];
    for (const [path, options, code] of cases) {
      expect(await codeOf(RawFileDevice.open(path, options)), `${path} ${JSON.stringify(options)}`).toBe(code);
    }
  });

  it('opens read-only with O_RDONLY, so it needs no write permission', async () => {
    const path = freshPath();
    await writeFile(path, pattern(4 * KiB, 3));
    await chmod(path, 0o444);
    const device = await openDevice(path, { readOnly: true });
    expect(device.readOnly).toBe(true);
    const back = Buffer.alloc(4 * KiB);
    await device.read(back, 0);
    expect(back.equals(pattern(4 * KiB, 3))).toBe(true);
    // The device itself refuses nothing (the server does), so the kernel's EBADF shows the mode.
    const err = await device.write(Buffer.alloc(512), 0, { fua: false }).catch((e: unknown) => e);
    expect(isIomapdError(err, 'IO')).toBe(true);
    expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('EBADF');
    if (process.getuid?.() !== 0) {
      expect(await codeOf(RawFileDevice.open(path, { readOnly: false }))).toBe('IO');
    }
  });
});

describe('RawFileDevice I/O', () => {
  it('loops on short reads and short writes', async () => {
    const { device } = await createDevice();
    // Pass at most 1000 bytes on to the real positional read/write, as a short transfer would.
    const realRead = fdIo.pread;
    const realWrite = fdIo.pwrite;
    const reads = vi.spyOn(fdIo, 'pread').mockImplementation((g, fd, b, o, l, p) => realRead(g, fd, b, o, Math.min(l, 1000), p));
    const writes = vi.spyOn(fdIo, 'pwrite').mockImplementation((g, fd, b, o, l, p) => realWrite(g, fd, b, o, Math.min(l, 1000), p));
    await device.write(pattern(10 * KiB, 4), 512, { fua: false });
    expect(writes.mock.calls.length).toBe(11);
    const back = Buffer.alloc(10 * KiB);
    await device.read(back, 512);
    expect(reads.mock.calls.length).toBe(11);
    expect(back.equals(pattern(10 * KiB, 4))).toBe(true);
  });

  it('reports a read past the end of a file that shrank as IO', async () => {
    const { path, device } = await createDevice(8 * KiB);
    await truncate(path, 4 * KiB + 512);
    expect(await codeOf(device.read(Buffer.alloc(4 * KiB), 4 * KiB))).toBe('IO');
  });

  it.each([
    ['ENOSPC', 'NO_SPACE'],
    ['EDQUOT', 'NO_SPACE'],
    ['EFBIG', 'NO_SPACE'],
    ['EIO', 'IO'],
  ])('maps a write failing with %s to %s, keeping the cause', async (errno, code) => {
    const { device } = await createDevice();
    const injected = errnoError(errno);
    vi.spyOn(fdIo, 'pwrite').mockRejectedValue(injected);
    const err = await device.write(Buffer.alloc(512), 0, { fua: false }).catch((e: unknown) => e);
    expect(isIomapdError(err, code as 'IO')).toBe(true);
    expect((err as Error).cause).toBe(injected);
    expect(device.poisoned).toBe(false);
  });

});

describe('RawFileDevice block status', () => {
  it('reports the holes of a sparse file (SEEK_DATA / SEEK_HOLE) as hole+zero, and data as data', async () => {
    const { device } = await createDevice(MiB);
    expect(device.capabilities.sparse).toBe(true);
    await device.write(pattern(8 * KiB, 1), 64 * KiB, { fua: false });
    await device.write(pattern(4 * KiB, 2), MiB - 4 * KiB, { fua: false });
    expect(await device.blockStatus(0, MiB)).toEqual([
      { length: 64 * KiB, hole: true, zero: true },
      { length: 8 * KiB, hole: false, zero: false },
      { length: MiB - 76 * KiB, hole: true, zero: true },
      { length: 4 * KiB, hole: false, zero: false },
    ]);
    // A range inside one run is one extent of exactly that range.
    expect(await device.blockStatus(66 * KiB, 2 * KiB)).toEqual([{ length: 2 * KiB, hole: false, zero: false }]);
    expect(await device.blockStatus(512, 1024)).toEqual([{ length: 1024, hole: true, zero: true }]);
  });

  it('answers at most a few dozen extents per call, contiguous from the offset', async () => {
    const { device } = await createDevice(4 * MiB);
    // 200 data runs with holes between: far more than one answer carries.
    for (let i = 0; i < 200; i++) await device.write(pattern(4 * KiB, i), i * 16 * KiB, { fua: false });
    const seeks = vi.spyOn(nativeFile, 'seekData');
    const extents = await device.blockStatus(0, 4 * MiB);
    expect(extents.length).toBeGreaterThan(1);
    expect(extents.length).toBeLessThanOrEqual(32);
    expect(seeks.mock.calls.length).toBeLessThanOrEqual(32);
    expect(extents.reduce((n, e) => n + e.length, 0)).toBeLessThan(4 * MiB);
    expect(extents[0]).toEqual({ length: 4 * KiB, hole: false, zero: false });
    expect(extents[1]).toEqual({ length: 12 * KiB, hole: true, zero: true });
  });

  it('falls back to everything data where lseek cannot tell holes (EINVAL, ENOTSUP)', async () => {
    vi.spyOn(nativeFile, 'seekData').mockRejectedValue(errnoError('EINVAL'));
    const { device } = await createDevice();
    expect(device.capabilities.sparse).toBe(false);
    expect(await device.blockStatus(4 * KiB, 100 * KiB)).toEqual([{ length: 100 * KiB, hole: false, zero: false }]);
    vi.restoreAllMocks();
    const other = await createDevice();
    expect(other.device.capabilities.sparse).toBe(true);
    vi.spyOn(nativeFile, 'seekData').mockRejectedValue(errnoError('ENOTSUP'));
    expect(await other.device.blockStatus(0, MiB)).toEqual([{ length: MiB, hole: false, zero: false }]);
  });
});

describe('RawFileDevice durability', () => {
  it('calls fdatasync for FUA and FLUSH, and only then', async () => {
    const { device } = await createDevice();
    const syncs = vi.spyOn(fileHandleProto, 'datasync');
    await device.write(pattern(4 * KiB, 5), 0, { fua: false });
    await device.trim(0, 512, { fua: false });
    await device.zero(0, 512, { fua: false, mayTrim: false, fast: false });
    expect(syncs).toHaveBeenCalledTimes(0);
    await device.write(pattern(4 * KiB, 5), 0, { fua: true });
    expect(syncs).toHaveBeenCalledTimes(1);
    await device.trim(0, 512, { fua: true });
    expect(syncs).toHaveBeenCalledTimes(2);
    await device.zero(0, 512, { fua: true, mayTrim: true, fast: false });
    expect(syncs).toHaveBeenCalledTimes(3);
    await device.flush();
    expect(syncs).toHaveBeenCalledTimes(4);
  });

  it('shares one fdatasync among flushes that arrive while one is running', async () => {
    const { device } = await createDevice();
    const realSync = fileHandleProto.datasync;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const syncs = vi.spyOn(fileHandleProto, 'datasync').mockImplementation(async function (this: FileHandle) {
      await gate;
      return realSync.call(this);
    });
    const first = device.flush();
    // These start after the first sync began, so it may not cover them: they share the next one.
    const later = [device.flush(), device.flush(), device.write(Buffer.alloc(512), 0, { fua: true })];
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(syncs).toHaveBeenCalledTimes(1);
    release();
    await Promise.all([first, ...later]);
    expect(syncs).toHaveBeenCalledTimes(2);
  });

  it.each([
    ['EIO', 'IO'],
    ['ENOSPC', 'NO_SPACE'],
  ])('after an fdatasync failing with %s, refuses writes and flushes but still reads', async (errno, code) => {
    const { device } = await createDevice();
    await device.write(pattern(4 * KiB, 6), 0, { fua: false });
    const injected = errnoError(errno);
    vi.spyOn(fileHandleProto, 'datasync').mockRejectedValueOnce(injected);
    const err = await device.flush().catch((e: unknown) => e);
    expect(isIomapdError(err, code as 'IO')).toBe(true);
    expect((err as Error).cause).toBe(injected);
    expect(device.poisoned).toBe(true);

    // The next real fdatasync would succeed; refusing must not depend on it failing again.
    expect(await codeOf(device.flush())).toBe('STORAGE_POISONED');
    expect(await codeOf(device.write(Buffer.alloc(512), 0, { fua: false }))).toBe('STORAGE_POISONED');
    expect(await codeOf(device.trim(0, 512, { fua: false }))).toBe('STORAGE_POISONED');
    expect(await codeOf(device.zero(0, 512, { fua: false, mayTrim: true, fast: false }))).toBe('STORAGE_POISONED');
    const back = Buffer.alloc(4 * KiB);
    await device.read(back, 0);
    expect(back.equals(pattern(4 * KiB, 6))).toBe(true);
  });

  it('is poisoned by a FUA write whose sync fails', async () => {
    const { device } = await createDevice();
    vi.spyOn(fileHandleProto, 'datasync').mockRejectedValueOnce(errnoError('EIO'));
    expect(await codeOf(device.write(Buffer.alloc(512), 0, { fua: true }))).toBe('IO');
    expect(await codeOf(device.write(Buffer.alloc(512), 0, { fua: false }))).toBe('STORAGE_POISONED');
  });
});

describe('RawFileDevice zeroing', () => {
  /** Makes every hole punch fail as a filesystem without PUNCH_HOLE would (EOPNOTSUPP). */
  function punchUnsupported() {
    return vi.spyOn(nativeFile, 'punchHole').mockRejectedValue(errnoError('EOPNOTSUPP'));
  }

  async function filledDevice(extra: Partial<Parameters<typeof RawFileDevice.open>[1]> = {}) {
    const made = await createDevice(4 * MiB, extra);
    await made.device.write(pattern(4 * MiB, 7), 0, { fua: true });
    return made;
  }

  async function expectZeroes(device: RawFileDevice, offset: number, length: number): Promise<void> {
    const bytes = Buffer.alloc(length);
    await device.read(bytes, offset);
    expect(isAllZero(bytes)).toBe(true);
  }

  it('punches a hole for a large TRIM, freeing the space', async () => {
    const { path, device } = await filledDevice();
    const before = await allocatedBytes(path);
    await device.trim(MiB, 2 * MiB, { fua: false });
    await expectZeroes(device, MiB, 2 * MiB);
    expect(await allocatedBytes(path)).toBeLessThanOrEqual(before - 2 * MiB);
    const after = Buffer.alloc(MiB);
    await device.read(after, 3 * MiB);
    expect(after.equals(pattern(4 * MiB, 7).subarray(3 * MiB))).toBe(true);
  });

  it('punches the file it holds, in this process, over exactly the range asked', async () => {
    const { path, device } = await filledDevice();
    const punches = vi.spyOn(nativeFile, 'punchHole');
    await device.trim(MiB, 2 * MiB, { fua: false });
    await device.zero(0, MiB, { fua: false, mayTrim: true, fast: true });
    expect(punches.mock.calls.map(([, offset, length]) => [offset, length])).toEqual([[MiB, 2 * MiB], [0, MiB]]);
    const fd = punches.mock.calls[0]![0];
    expect(await readlink(`/proc/self/fd/${fd}`)).toBe(path);
  });

  it('writes zeroes instead of punching short ranges and NO_HOLE zeroes', async () => {
    const { device } = await filledDevice();
    const punches = vi.spyOn(nativeFile, 'punchHole');
    await device.trim(0, 32 * KiB, { fua: false });
    await device.zero(MiB, 2 * MiB, { fua: false, mayTrim: false, fast: false });
    expect(punches).not.toHaveBeenCalled();
    await expectZeroes(device, 0, 32 * KiB);
    await expectZeroes(device, MiB, 2 * MiB);
  });

  it('falls back to writing zeroes when punching fails, and stops trying it', async () => {
    const { path, device } = await filledDevice();
    const punches = punchUnsupported();
    const before = await allocatedBytes(path);
    await device.trim(MiB, MiB, { fua: false });
    await device.zero(2 * MiB, MiB, { fua: false, mayTrim: true, fast: false });
    await device.trim(0, 3 * MiB + 512, { fua: true });
    expect(punches).toHaveBeenCalledTimes(1);
    await expectZeroes(device, 0, 3 * MiB + 512);
    expect(await allocatedBytes(path)).toBe(before);
  });

  it('does FAST_ZERO only by punching, failing up front otherwise', async () => {
    const fast = { fua: false, fast: true };
    const { device } = await filledDevice();
    expect(await codeOf(device.zero(0, MiB, { ...fast, mayTrim: true }))).toBe('resolved');
    await expectZeroes(device, 0, MiB);
    // NO_HOLE forbids the punch, so zeroing would mean writing: refused, data untouched.
    expect(await codeOf(device.zero(MiB, MiB, { ...fast, mayTrim: false }))).toBe('FAST_ZERO_UNAVAILABLE');
    const kept = Buffer.alloc(MiB);
    await device.read(kept, MiB);
    expect(kept.equals(pattern(4 * MiB, 7).subarray(MiB, 2 * MiB))).toBe(true);
    // A range too short to punch costs what a WRITE costs, so it is done.
    expect(await codeOf(device.zero(MiB, 4 * KiB, { ...fast, mayTrim: false }))).toBe('resolved');
    await expectZeroes(device, MiB, 4 * KiB);
  });

  it('refuses FAST_ZERO when punching fails or is unavailable', async () => {
    const fast = { fua: false, fast: true, mayTrim: true };
    const { device } = await filledDevice();
    const punches = punchUnsupported();
    expect(await codeOf(device.zero(0, MiB, fast))).toBe('FAST_ZERO_UNAVAILABLE');
    expect(await codeOf(device.zero(0, MiB, fast))).toBe('FAST_ZERO_UNAVAILABLE');
    expect(punches).toHaveBeenCalledTimes(1);
    const kept = Buffer.alloc(MiB);
    await device.read(kept, 0);
    expect(kept.equals(pattern(4 * MiB, 7).subarray(0, MiB))).toBe(true);
    const unpunchable = await filledDevice({ punchMinLength: 0 });
    await unpunchable.device.trim(0, 512, { fua: false }); // the failed punch that rules punching out
    expect(await codeOf(unpunchable.device.zero(0, 4 * KiB, fast))).toBe('FAST_ZERO_UNAVAILABLE');
  });

  it('a punch refused because the device is poisoned is not mistaken for a filesystem without holes', async () => {
    const { device } = await filledDevice();
    vi.spyOn(fileHandleProto, 'datasync').mockRejectedValueOnce(errnoError('EIO'));
    expect(await codeOf(device.flush())).toBe('IO');
    expect(await codeOf(device.trim(0, MiB, { fua: false }))).toBe('STORAGE_POISONED');
    expect(await codeOf(device.zero(0, MiB, { fua: false, fast: true, mayTrim: true }))).toBe('STORAGE_POISONED');
  });
});

describe('RawFileDevice on a block device', () => {
  it('sizes it with blockdev and zeroes it (needs root and a free loop device)', async (ctx) => {
    const image = `${temp.dir}/loop-backing.img`;
    await writeFile(image, pattern(8 * MiB, 8));
    let loop: string;
    try {
      loop = (await execFile('losetup', ['--find', '--show', image])).stdout.trim();
    } catch {
      ctx.skip();
      return;
    }
    try {
      expect(await codeOf(RawFileDevice.open(loop, { readOnly: true, blockdevCommand: `${temp.dir}/none` }))).toBe('IO');
      const device = await openDevice(loop, { readOnly: false });
      expect(device.size).toBe(8 * MiB);
      await device.write(pattern(4 * KiB, 9), 0, { fua: true });
      await device.trim(MiB, 2 * MiB, { fua: true });
      const back = Buffer.alloc(3 * MiB);
      await device.read(back, 0);
      expect(back.subarray(0, 4 * KiB).equals(pattern(4 * KiB, 9))).toBe(true);
      expect(isAllZero(back.subarray(MiB, 3 * MiB))).toBe(true);
      await device.close();
    } finally {
      await execFile('losetup', ['--detach', loop]);
    }
  });
});

describe('readNow (the synchronous read fast path)', () => {
  it('reads the bytes now when the gate admits, and declines (doing nothing) when it does not', async () => {
    const { device } = await createDevice(MiB);
    const data = pattern(64 * KiB, 5);
    await device.write(data, 128 * KiB, { fua: false });
    device.gates.reads.mode = 'always';
    const into = Buffer.alloc(64 * KiB);
    expect(device.readNow(into, 128 * KiB)).toBe(true);
    expect(into.equals(data)).toBe(true);
    device.gates.reads.mode = 'never';
    const untouched = Buffer.alloc(4 * KiB, 0xaa);
    expect(device.readNow(untouched, 128 * KiB)).toBe(false);
    expect(untouched.every((b) => b === 0xaa)).toBe(true);
  });

  it('takes its gate modes from the open options, each device its own gates', async () => {
    const pooled = await createDevice(MiB, { inline: { reads: 'never' } });
    const inline = await createDevice(MiB, { inline: { reads: 'always' } });
    await pooled.device.write(pattern(4 * KiB, 3), 0, { fua: false });
    await inline.device.write(pattern(4 * KiB, 3), 0, { fua: false });
    expect(pooled.device.readNow(Buffer.alloc(4 * KiB), 0)).toBe(false);
    expect(inline.device.readNow(Buffer.alloc(4 * KiB), 0)).toBe(true);
    expect(pooled.device.gates.reads.mode).toBe('never');
    expect(pooled.device.gates.writes.mode).toBe('auto');
  });

  it('a file that shrank under it is an IO error, not zeros', async () => {
    const { path, device } = await createDevice(MiB);
    await truncate(path, 512 * KiB);
    device.gates.reads.mode = 'always';
    let code = 'none';
    try {
      device.readNow(Buffer.alloc(4 * KiB), 768 * KiB);
    } catch (err) {
      code = isIomapdError(err) ? err.code : 'other';
    }
    expect(code).toBe('IO');
  });
});
