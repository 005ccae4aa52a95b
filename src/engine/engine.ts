// The direct-I/O engine over one open image: one VolumeDevice per exported volume, and the
// per-volume state requests share: the range lock (Z6), the write gate structural operations
// drain (K2) and the counters. FLUSH is image-wide through the one Durability (D5/D10).
//
// The engine gets the store's parts (StoreParts), not the store: it neither opens nor closes it.
// Devices get their parts from here and never see the engine, so nothing imports back.
//
// Lock order: write gate, then range lock, then the store (whose begin/end never wait on us).
import type { StoreParts } from '../fs/store-parts.ts';
import type { VolumeInfo } from '../fs/volumes.ts';
import type { Logger } from '../util/log.ts';
import type { MinBlockSize } from './block-sizes.ts';
import { newCounters, type VolumeCounters } from './counters.ts';
import { RangeLock } from './range-lock.ts';
import { VolumeDevice } from './volume-device.ts';
import { WriteGate } from './write-gate.ts';

interface VolumeState {
  readonly lock: RangeLock;
  readonly gate: WriteGate;
  readonly counters: VolumeCounters;
}

export class Engine {
  private readonly parts: StoreParts;
  readonly log: Logger | null;
  private readonly volumes = new Map<string, VolumeState>();
  private readonly devices = new Map<string, VolumeDevice>();

  /** The minimum block size every device advertises (`serve --min-block-size`). */
  private readonly minimumBlock: MinBlockSize | undefined;

  constructor(parts: StoreParts, log: Logger | null = null, opts: { readonly minimumBlock?: MinBlockSize } = {}) {
    this.parts = parts;
    this.log = log;
    this.minimumBlock = opts.minimumBlock;
  }

  private state(volume: string): VolumeState {
    let s = this.volumes.get(volume);
    if (!s) {
      s = { lock: new RangeLock(), gate: new WriteGate(), counters: newCounters() };
      this.volumes.set(volume, s);
    }
    return s;
  }

  /** The device serving `volume` (one per volume; read-only for read-only volumes and snapshots). */
  device(volume: string): VolumeDevice {
    let d = this.devices.get(volume);
    if (!d) {
      const { mapper, data, durability, volumes } = this.parts;
      const facts = volumes.facts(volume);
      const s = this.state(volume);
      const readOnly = facts.readOnly || facts.snapshot || volumes.imageReadOnly;
      const { minimumBlock } = this;
      d = new VolumeDevice({ mapper, data, durability, volumes, facts, readOnly, gate: s.gate, lock: s.lock, counters: s.counters, log: this.log, ...(minimumBlock === undefined ? {} : { minimumBlock }) });
      this.devices.set(volume, d);
    }
    return d;
  }

  counters(volume: string): VolumeCounters {
    return this.state(volume).counters;
  }

  /** Runs `op` with `volume` drained (K2): a snapshot holds exactly the writes replied before it. */
  drained<T>(volume: string, op: () => Promise<T>): Promise<T> {
    return this.state(volume).gate.drained(op);
  }

  snapshot(source: string, name: string): Promise<VolumeInfo> {
    return this.drained(source, () => this.parts.volumes.snapshot(source, name));
  }

  clone(source: string, name: string): Promise<VolumeInfo> {
    return this.drained(source, () => this.parts.volumes.clone(source, name));
  }

  /**
   * Deletes a drained volume and forgets its device and state. The caller stops exporting it
   * first: a device still in use would fail every request with NOT_FOUND.
   */
  async deleteVolume(volume: string): Promise<void> {
    await this.drained(volume, () => this.parts.volumes.delete(volume));
    this.devices.delete(volume);
    this.volumes.delete(volume);
  }

  /** Resizes a drained volume; its device is dropped (a VolumeDevice has a fixed size), so ask device() again. */
  async resizeVolume(volume: string, size: number): Promise<VolumeInfo> {
    const info = await this.drained(volume, () => this.parts.volumes.resize(volume, size));
    this.devices.delete(volume);
    return info;
  }
}
