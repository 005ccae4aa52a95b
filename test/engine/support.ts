// Engine test rig: an image store over instrumented memory pre-filled with a garbage pattern, so
// any stale-data exposure shows (semantics §9 harness requirements).
import { Engine } from '../../src/engine/engine.ts';
import type { VolumeDevice } from '../../src/engine/volume-device.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { CrashStorage } from '../support/crash-storage.ts';
import { FaultStorage } from '../support/fault-storage.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { GatedStorage } from '../support/gated-storage.ts';

export const B = 4096;
export const GARBAGE = 0xee;
export const IMAGE_BYTES = 4 << 20;

export interface Rig {
  engine: Engine;
  store: ImageStore;
  faults: FaultStorage;
  crash: CrashStorage | null;
  /** With `gated: true`: holds chosen reads and writes (between the faults and the base storage). */
  gates: GatedStorage | null;
  dev(name?: string): VolumeDevice;
}

export async function makeRig(opts: { crash?: boolean; dataBytes?: number; volumeBytes?: number; seed?: number; gated?: boolean } = {}): Promise<Rig> {
  const initial = Buffer.alloc(IMAGE_BYTES, GARBAGE);
  const crash = opts.crash ? new CrashStorage(initial, opts.seed ?? 7) : null;
  const base: Storage = crash ?? new MemoryStorage(initial);
  const gates = opts.gated ? new GatedStorage(base) : null;
  const faults = new FaultStorage(gates ?? base);
  const store = await ImageStore.create(faults, { dataBytes: opts.dataBytes ?? 2 << 20, journalBytes: 256 << 10 });
  await store.createVolume('v', opts.volumeBytes ?? 64 * B);
  await store.commit();
  return wrap(store, faults, crash, gates);
}

export function wrap(store: ImageStore, faults: FaultStorage, crash: CrashStorage | null, gates: GatedStorage | null = null): Rig {
  const engine = new Engine(store);
  return { engine, store, faults, crash, gates, dev: (name = 'v') => engine.device(name) };
}

/** The absolute storage byte range [from, to) holding logical [pos, pos + len) of `name` now. */
export function storageSpan(rig: Rig, name: string, pos: number, len: number): [number, number] {
  const e = rig.store.lookup(name, pos);
  const from = rig.store.superblock.dataOffset + e.physical + (pos - e.offset);
  return [from, from + len];
}

/** Lets pending promise callbacks and timers run, so anything not held has time to finish. */
export const settleTicks = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Opens what survives a crash of `rig` right now. */
export async function reopenAfterCrash(rig: Rig): Promise<Rig> {
  const image = rig.crash!.crashImage();
  const faults = new FaultStorage(new MemoryStorage(image));
  const store = await ImageStore.open(faults);
  return wrap(store, faults, null);
}

export function fill(len: number, byte: number): Buffer {
  return Buffer.alloc(len, byte);
}

export async function readAt(dev: VolumeDevice, offset: number, len: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len).fill(0x5a); // not zeroed: the engine must write every byte
  await dev.read(buf, offset);
  return buf;
}

export const noFua = { fua: false } as const;
export const fua = { fua: true } as const;

/** The image bytes behind logical `pos` (through the data area, bypassing the engine). */
export async function imageBytes(rig: Rig, name: string, pos: number, len: number): Promise<Buffer> {
  const e = rig.store.lookup(name, pos);
  const buf = Buffer.alloc(len);
  await rig.store.readData(e.physical + (pos - e.offset), buf);
  return buf;
}

/** Makes `[offset, offset+len)` UNWRITTEN (WRITE_ZEROES with NO_HOLE over a hole). */
export async function makeUnwritten(dev: VolumeDevice, offset: number, len: number): Promise<void> {
  await dev.zero(offset, len, { fua: false, mayTrim: false, fast: false });
}
