// The direct-I/O engine over one image store: one VolumeDevice per exported volume, one flush
// barrier for all of them (FLUSH is image-wide, semantics D5/D10), and the per-volume state that
// requests share: the range lock (Z6) and the write gate that structural operations drain (K2).
//
// Lock order: write gate, then range lock, then the store (whose begin/end never wait on us).
import type { ImageStore } from '../fs/image-store.ts';
import type { VolumeInfo } from '../fs/volumes.ts';
import type { Logger } from '../util/log.ts';
import { newCounters, type VolumeCounters } from './counters.ts';
import { RangeLock } from './range-lock.ts';
import { VolumeDevice } from './volume-device.ts';

export interface VolumeState {
  readonly lock: RangeLock;
  readonly counters: VolumeCounters;
  /** Write-type requests between gate entry and the end of their completion stage. */
  inFlight: number;
  /** Set while a structural operation runs: new write-type requests wait for it. */
  gate: Promise<void> | null;
  idle: (() => void) | null;
}

export class Engine {
  readonly store: ImageStore;
  readonly log: Logger | null;
  private readonly volumes = new Map<string, VolumeState>();
  private readonly devices = new Map<string, VolumeDevice>();
  private openDevices = 0;
  private closing: Promise<void> | null = null;

  constructor(store: ImageStore, log: Logger | null = null) {
    this.store = store;
    this.log = log;
  }

  state(volume: string): VolumeState {
    let s = this.volumes.get(volume);
    if (!s) {
      s = { lock: new RangeLock(), counters: newCounters(), inFlight: 0, gate: null, idle: null };
      this.volumes.set(volume, s);
    }
    return s;
  }

  /** The device serving `volume` (one per volume; read-only for read-only volumes and snapshots). */
  device(volume: string): VolumeDevice {
    let d = this.devices.get(volume);
    if (!d) {
      const info = this.store.volume(volume);
      d = new VolumeDevice(this, info, info.readOnly || info.snapshot || this.store.readOnly);
      this.devices.set(volume, d);
      this.openDevices++;
    }
    return d;
  }

  counters(volume: string): VolumeCounters {
    return this.state(volume).counters;
  }

  /** Enters a write-type request (waits while a structural operation drains the volume). */
  async enterWrite(volume: string): Promise<VolumeState> {
    const s = this.state(volume);
    while (s.gate) await s.gate;
    s.inFlight++;
    return s;
  }

  leaveWrite(s: VolumeState): void {
    s.inFlight--;
    if (s.inFlight === 0 && s.idle) s.idle();
  }

  /**
   * Runs `op` with the volume drained: new write-type requests wait, in-flight ones finish their
   * completion stage first (K2). A snapshot taken this way holds exactly the writes replied before it.
   */
  async drained<T>(volume: string, op: () => Promise<T>): Promise<T> {
    const s = this.state(volume);
    while (s.gate) await s.gate;
    let open!: () => void;
    s.gate = new Promise<void>((r) => (open = r));
    try {
      if (s.inFlight > 0) await new Promise<void>((r) => (s.idle = r));
      s.idle = null;
      return await op();
    } finally {
      s.gate = null;
      open();
    }
  }

  snapshot(source: string, name: string): Promise<VolumeInfo> {
    return this.drained(source, () => this.store.snapshot(source, name));
  }

  clone(source: string, name: string): Promise<VolumeInfo> {
    return this.drained(source, () => this.store.clone(source, name));
  }

  /**
   * Deletes a drained volume and forgets its device and state. The caller stops exporting it
   * first: a device still in use would fail every request with NOT_FOUND.
   */
  async deleteVolume(volume: string): Promise<void> {
    await this.drained(volume, () => this.store.deleteVolume(volume));
    this.forgetDevice(volume);
    this.volumes.delete(volume);
  }

  /** Resizes a drained volume; its device is dropped (a VolumeDevice has a fixed size), so ask device() again. */
  async resizeVolume(volume: string, size: number): Promise<VolumeInfo> {
    const info = await this.drained(volume, () => this.store.resizeVolume(volume, size));
    this.forgetDevice(volume);
    return info;
  }

  /** Drops a device without closing the store: the engine's owner closes it (close()). */
  private forgetDevice(volume: string): void {
    const d = this.devices.get(volume);
    if (!d) return;
    this.devices.delete(volume);
    this.openDevices--;
    d.retire();
  }

  /** FLUSH: every write replied before this call, on any volume and connection, becomes durable. */
  async flush(): Promise<boolean> {
    const committed = this.store.uncommitted > 0;
    await this.store.commit();
    return committed;
  }

  /** Called by each device's close; the store closes with the last one. */
  async release(): Promise<void> {
    this.openDevices--;
    if (this.openDevices <= 0) await this.close();
  }

  async close(): Promise<void> {
    this.closing ??= this.store.close();
    await this.closing;
  }
}
