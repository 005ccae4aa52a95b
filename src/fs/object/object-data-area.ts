// The data area of an object-store image: the same physical byte offsets as a file image's
// (docs/STORE.md), resolved block by block through the block index (block-index.ts) to segment
// slots. A write appends whole blocks to the open segment and stages their new locations; a write
// of part of a block reads the block's current bytes first (read-modify-write, one at a time per
// block, so two writes into different parts of one block both survive). Blocks without a location
// read as zeros. Nothing is durable until Durability.commit().
import { IomapdError, fail } from '../../util/errors.ts';
import type { DataArea } from '../store-contract.ts';
import type { StoreState } from '../store-state.ts';
import type { BlockIndex } from './block-index.ts';
import type { SegmentLog } from './segment-log.ts';
import type { WriterLatch } from './writer-latch.ts';

export class ObjectDataArea implements DataArea {
  private readonly state: StoreState;
  private readonly index: BlockIndex;
  private readonly segments: SegmentLog;
  private readonly writer: WriterLatch;
  /** Read-modify-writes running, by block: later writes of that block wait for them. */
  private readonly rmw = new Map<number, Promise<void>>();
  readonly canReadNow = false;
  /** Data writes completed (a commit covers those completed when it takes the staged changes). */
  writesCompleted = 0;

  constructor(state: StoreState, index: BlockIndex, segments: SegmentLog, writer: WriterLatch) {
    this.state = state;
    this.index = index;
    this.segments = segments;
    this.writer = writer;
  }

  get bytes(): number {
    return this.state.meta.dataBlocks * this.state.blockSize;
  }

  private check(physical: number, length: number): void {
    if (!Number.isSafeInteger(physical) || physical < 0 || physical + length > this.bytes) {
      fail('OUT_OF_RANGE', `data range ${physical}+${length} is outside the data area`);
    }
  }

  readNow(): boolean {
    return false;
  }

  async read(physical: number, buf: Buffer): Promise<void> {
    this.check(physical, buf.length);
    const B = this.state.blockSize;
    let done = 0;
    while (done < buf.length) {
      // One run: consecutive blocks in consecutive slots of one segment (or all without data).
      const pos = physical + done;
      const block = Math.floor(pos / B);
      const within = pos - block * B;
      const loc = this.index.lookup(block);
      let n = Math.min(B - within, buf.length - done);
      for (let next = block + 1; done + n < buf.length; next++) {
        const l = this.index.lookup(next);
        const follows = loc === null ? l === null : l !== null && l.epoch === loc.epoch && l.num === loc.num && l.slot === loc.slot + (next - block);
        if (!follows) break;
        n += Math.min(B, buf.length - done - n);
      }
      const into = buf.subarray(done, done + n);
      if (loc === null) into.fill(0);
      else if (!(await this.segments.readAt(loc, within, into))) await this.readSlowly(block, within, into);
      done += n;
    }
  }

  /** Block by block, looking each up again: a compaction may have moved them meanwhile. */
  private async readSlowly(block: number, within: number, into: Buffer): Promise<void> {
    const B = this.state.blockSize;
    let done = 0;
    for (let b = block; done < into.length; b++) {
      const from = b === block ? within : 0;
      const n = Math.min(B - from, into.length - done);
      await this.readBlock(b, from, into.subarray(done, done + n));
      done += n;
    }
  }

  private async readBlock(block: number, within: number, into: Buffer): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const loc = this.index.lookup(block);
      if (!loc) {
        into.fill(0);
        return;
      }
      if (await this.segments.readAt(loc, within, into)) return;
      if (this.index.lookup(block) === loc) break;
    }
    throw new IomapdError('CORRUPT', `block ${block}: its segment is missing from the bucket`);
  }

  async write(physical: number, buf: Buffer): Promise<void> {
    this.check(physical, buf.length);
    this.state.writable();
    this.writer.refuse();
    const B = this.state.blockSize;
    let done = 0;
    const parts: Promise<void>[] = [];
    while (done < buf.length) {
      if (this.overBound()) await this.backPressure();
      const pos = physical + done;
      const block = Math.floor(pos / B);
      const within = pos - block * B;
      const n = Math.min(B - within, buf.length - done);
      const piece = buf.subarray(done, done + n);
      if (n === B && !this.rmw.has(block)) this.index.stage(block, this.segments.append(piece));
      else parts.push(this.patch(block, within, piece));
      done += n;
    }
    await Promise.all(parts);
    this.writesCompleted++;
  }

  /** Read-modify-write of one block, after any running one of the same block. */
  private patch(block: number, within: number, piece: Buffer): Promise<void> {
    const before = this.rmw.get(block) ?? Promise.resolve();
    const mine = before
      .catch(() => {})
      .then(async () => {
        const B = this.state.blockSize;
        const whole = Buffer.alloc(B);
        if (piece.length < B) await this.readBlock(block, 0, whole);
        piece.copy(whole, within);
        this.writer.refuse();
        this.index.stage(block, this.segments.append(whole));
      });
    const tracked = mine.finally(() => {
      if (this.rmw.get(block) === tracked) this.rmw.delete(block);
    });
    this.rmw.set(block, tracked);
    return tracked;
  }

  private overBound(): boolean {
    return this.segments.unuploadedBytes + this.state.blockSize > this.segments.cache.limit;
  }

  /** Holds writes while the cache's bound is reached by data not yet uploaded. */
  private async backPressure(): Promise<void> {
    while (this.overBound()) {
      if (!(await this.segments.waitForUpload())) return;
    }
  }
}
