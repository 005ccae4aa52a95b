// The volume and mapping calls both image backends (the file image, image-store.ts, and the
// object-store image, object/object-image-store.ts) offer by forwarding to their parts, written
// once. A backend provides the parts; everything here is a one-line delegation.
import type { SpaceReservation } from './allocator.ts';
import type { BeginOptions, Mapper } from './mapper.ts';
import type { ExtentInfo, Intent, Mapping } from './mapping.ts';
import type { DataArea } from './store-contract.ts';
import type { CreateVolumeOptions, VolumeInfo, Volumes } from './volumes.ts';

export abstract class StoreForwarders {
  abstract readonly mapper: Mapper;
  abstract readonly volumes: Volumes;
  abstract readonly data: DataArea;

  listVolumes(): VolumeInfo[] {
    return this.volumes.list();
  }

  volume(name: string): VolumeInfo {
    return this.volumes.info(name);
  }

  createVolume(name: string, size: number, opts: CreateVolumeOptions = {}): Promise<VolumeInfo> {
    return this.volumes.create(name, size, opts);
  }

  deleteVolume(name: string): Promise<void> {
    return this.volumes.delete(name);
  }

  resizeVolume(name: string, size: number): Promise<VolumeInfo> {
    return this.volumes.resize(name, size);
  }

  snapshot(source: string, name: string): Promise<VolumeInfo> {
    return this.volumes.snapshot(source, name);
  }

  clone(source: string, name: string): Promise<VolumeInfo> {
    return this.volumes.clone(source, name);
  }

  extents(name: string, from = 0, to = Infinity): IterableIterator<ExtentInfo> {
    return this.mapper.extents(name, from, to);
  }

  lookup(name: string, pos: number): ExtentInfo {
    return this.mapper.lookup(name, pos);
  }

  reserve(blocks: number): SpaceReservation {
    return this.mapper.reserve(blocks);
  }

  begin(volume: string, pos: number, len: number, intent: Intent, opts: BeginOptions = {}): Promise<Mapping> {
    return this.mapper.begin(volume, pos, len, intent, opts);
  }

  writeInline(mapping: Mapping, pos: number, data: Buffer): void {
    this.mapper.writeInline(mapping, pos, data);
  }

  end(mapping: Mapping, bytesDone: number, error?: unknown): Promise<void> {
    return this.mapper.end(mapping, bytesDone, error);
  }

  readData(physical: number, buf: Buffer): Promise<void> {
    return this.data.read(physical, buf);
  }

  writeData(physical: number, buf: Buffer): Promise<void> {
    return this.data.write(physical, buf);
  }
}
