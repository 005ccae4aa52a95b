// The file image's data area: the blocks after the journal, addressed by mapping byte offsets.
// Bounds-checked, refused once the store is poisoned (the latch), and every completed write is
// counted for the data group sync, so a later sync knows what it must cover.
import { fail } from '../util/errors.ts';
import type { GroupSync } from '../storage/group-sync.ts';
import type { PoisonLatch } from '../storage/poison-latch.ts';
import type { DataArea } from './store-contract.ts';
import type { StoreState } from './store-state.ts';

export class FileDataArea implements DataArea {
  private readonly latch: PoisonLatch;
  private readonly state: StoreState;
  /** Byte offset of data block 0 in the image file. */
  private readonly offset: number;
  private readonly dataSync: GroupSync;
  readonly canReadNow: boolean;

  constructor(latch: PoisonLatch, state: StoreState, offset: number, dataSync: GroupSync) {
    this.latch = latch;
    this.state = state;
    this.offset = offset;
    this.dataSync = dataSync;
    this.canReadNow = latch.readNow !== undefined;
  }

  get bytes(): number {
    return this.state.meta.dataBlocks * this.state.blockSize;
  }

  private check(physical: number, length: number): void {
    if (!Number.isSafeInteger(physical) || physical < 0 || physical + length > this.bytes) {
      fail('OUT_OF_RANGE', `data range ${physical}+${length} is outside the data area`);
    }
  }

  async read(physical: number, buf: Buffer): Promise<void> {
    this.check(physical, buf.length);
    await this.latch.read(buf, this.offset + physical);
  }

  readNow(physical: number, buf: Buffer): boolean {
    if (this.latch.readNow === undefined) return false;
    this.check(physical, buf.length);
    return this.latch.readNow(buf, this.offset + physical);
  }

  /** Not durable until syncData() or commit(). */
  async write(physical: number, buf: Buffer): Promise<void> {
    this.check(physical, buf.length);
    await this.latch.write(buf, this.offset + physical);
    // Counted once it completed: a sync covers the writes counted when it started, and a write
    // still in flight then may land after the sync (a later FLUSH must sync again).
    this.dataSync.noteWrite();
  }
}
