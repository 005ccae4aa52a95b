// The in-memory state every piece of an open store shares: the metadata, the allocator over it,
// and the store's lifecycle (read-only, closed, poisoned). One object, so check --repair can swap
// the metadata for all pieces at once and every piece refuses changes by the same rules.
import { fail } from '../util/errors.ts';
import type { PoisonLatch } from '../storage/poison-latch.ts';
import { Allocator } from './allocator.ts';
import { metadataReserve } from './format.ts';
import type { Metadata, Volume } from './state.ts';

export class StoreState {
  meta: Metadata;
  readonly alloc: Allocator;
  readonly readOnly: boolean;
  readonly latch: PoisonLatch;
  closed = false;
  /** The format version the next superblock write records (raised, never lowered). */
  formatVersion: number;

  constructor(meta: Metadata, latch: PoisonLatch, readOnly: boolean, checkpointBlocks: number, formatVersion: number) {
    this.meta = meta;
    this.formatVersion = formatVersion;
    this.latch = latch;
    this.readOnly = readOnly;
    this.alloc = new Allocator(meta);
    this.alloc.metaReserve = metadataReserve(meta.dataBlocks);
    this.alloc.checkpointBlocks = checkpointBlocks;
  }

  get blockSize(): number {
    return this.meta.blockSize;
  }

  /** Replaces the metadata (check --repair). */
  replaceMeta(meta: Metadata): void {
    this.meta = meta;
    this.alloc.meta = meta;
  }

  /** Throws unless the store may change: IO when closed, READ_ONLY, STORAGE_POISONED. */
  writable(): void {
    if (this.closed) fail('IO', 'the image store is closed');
    if (this.readOnly) fail('READ_ONLY', 'the image is open read-only');
    this.latch.refuseIfPoisoned();
  }

  /** Throws IO once the store is closed. */
  open(): void {
    if (this.closed) fail('IO', 'the image store is closed');
  }

  volumeByName(name: string): Volume {
    const v = this.meta.byName.get(name);
    if (!v) fail('NOT_FOUND', `no volume named ${JSON.stringify(name)}`);
    return v;
  }
}
