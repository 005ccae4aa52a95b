// A sparse in-memory device, for tests and `iomapd serve --size`. Data lives in fixed-size pages
// in a Map, created on first write; an absent page is a hole that reads as zeroes. Nothing is
// allocated in proportion to the size, so a device of many TiB costs only what was written.
//
// To answer block status and large zero/trim requests without walking every page of a long
// hole, a second Map counts the present pages of each group of PAGES_PER_GROUP pages: a probe
// skips a whole empty group at once, and when the groups to probe outnumber the present ones it
// scans the present ones instead.
import assert from 'node:assert/strict';
import {
  fullCapabilities,
  type BlockDevice,
  type BlockSizes,
  type DeviceExtent,
  type WriteOptions,
  type ZeroOptions,
} from '../engine/block-device.ts';
import { fail } from '../util/errors.ts';
import { DEFAULT_BLOCK_SIZES, withMinimum, type MinBlockSize } from '../engine/block-sizes.ts';
import { assertRange } from './device-checks.ts';

export const DEFAULT_MEMORY_PAGE_SIZE = 64 * 1024;
const PAGES_PER_GROUP = 1024;
/** Block status stops after looking at this many pages; the answer may then be partial. */
const STATUS_PAGE_BUDGET = 64 * 1024;

// Memory is volatile, so flush and FUA have nothing to wait for; zeroing is always fast.
const MEMORY_CAPABILITIES = fullCapabilities(true);

export interface MemoryDeviceOptions {
  /** Bytes; a multiple of 512 up to 2^53 - 1. */
  readonly size: number;
  readonly readOnly?: boolean;
  /** Bytes per page: a power of two from 512 to 16 MiB (tests use small pages). */
  readonly pageSize?: number;
  /** The advertised minimum block size (`serve --min-block-size`; default 512). */
  readonly minimumBlock?: MinBlockSize;
}

export class MemoryDevice implements BlockDevice {
  readonly size: number;
  readonly readOnly: boolean;
  readonly blockSizes: BlockSizes;
  readonly capabilities = MEMORY_CAPABILITIES;

  readonly #pageSize: number;
  readonly #pages = new Map<number, Buffer>();
  /** Group index -> number of present pages in it; a group with none has no entry. */
  readonly #groupCounts = new Map<number, number>();
  #closed = false;

  constructor(options: MemoryDeviceOptions) {
    const { size, readOnly = false, pageSize = DEFAULT_MEMORY_PAGE_SIZE } = options;
    const minimum = DEFAULT_BLOCK_SIZES.minimum;
    if (!Number.isSafeInteger(size) || size < 0 || size % minimum !== 0) {
      fail('BAD_ARGUMENT', `memory device size ${size} is not a multiple of ${minimum} below 2^53`);
    }
    if (!Number.isSafeInteger(pageSize) || pageSize < minimum || pageSize > 16 * 1024 * 1024 ||
      !Number.isInteger(Math.log2(pageSize))) {
      fail('BAD_ARGUMENT', `memory page size ${pageSize} is not a power of two from 512 to 16 MiB`);
    }
    this.size = size;
    this.readOnly = readOnly;
    this.#pageSize = pageSize;
    this.blockSizes = options.minimumBlock === undefined ? DEFAULT_BLOCK_SIZES : withMinimum(DEFAULT_BLOCK_SIZES, options.minimumBlock);
  }

  /** Bytes of memory held by pages (for tests and statistics). */
  get allocatedBytes(): number {
    return this.#pages.size * this.#pageSize;
  }

  async read(into: Buffer, offset: number): Promise<void> {
    this.#check(offset, into.length);
    const pageSize = this.#pageSize;
    let done = 0;
    while (done < into.length) {
      const pos = offset + done;
      const index = Math.floor(pos / pageSize);
      const inPage = pos - index * pageSize;
      const n = Math.min(pageSize - inPage, into.length - done);
      const page = this.#pages.get(index);
      if (page === undefined) into.fill(0, done, done + n);
      else page.copy(into, done, inPage, inPage + n);
      done += n;
    }
  }

  async write(data: Buffer, offset: number, _options: WriteOptions): Promise<void> {
    this.#check(offset, data.length);
    const pageSize = this.#pageSize;
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const index = Math.floor(pos / pageSize);
      const inPage = pos - index * pageSize;
      const n = Math.min(pageSize - inPage, data.length - done);
      data.copy(this.#pageForWrite(index), inPage, done, done + n);
      done += n;
    }
  }

  async flush(): Promise<void> {
    this.#check(0, 0);
  }

  async trim(offset: number, length: number, _options: WriteOptions): Promise<void> {
    this.#check(offset, length);
    this.#zeroRange(offset, length, true);
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    this.#check(offset, length);
    // NO_HOLE (mayTrim false) keeps present pages allocated; absent pages are already holes
    // and allocating them would cost memory in proportion to the range.
    this.#zeroRange(offset, length, options.mayTrim);
  }

  async cache(offset: number, length: number): Promise<void> {
    this.#check(offset, length);
  }

  async blockStatus(offset: number, length: number): Promise<DeviceExtent[]> {
    this.#check(offset, length);
    assert.ok(length > 0, 'block status of an empty range');
    const pageSize = this.#pageSize;
    const end = offset + length;
    const endPage = Math.ceil(end / pageSize);
    const extents: DeviceExtent[] = [];
    let budget = STATUS_PAGE_BUDGET;
    let pos = offset;
    while (pos < end && budget > 0) {
      const index = Math.floor(pos / pageSize);
      let runEnd: number;
      if (this.#pages.has(index)) {
        let next = index + 1;
        budget--;
        while (next < endPage && budget > 0 && this.#pages.has(next)) {
          next++;
          budget--;
        }
        runEnd = Math.min(next * pageSize, end);
        extents.push({ length: runEnd - pos, hole: false, zero: false });
      } else {
        const present = this.#nextPresentPage(index + 1, endPage);
        runEnd = present < 0 ? end : Math.min(present * pageSize, end);
        budget--;
        extents.push({ length: runEnd - pos, hole: true, zero: true });
      }
      pos = runEnd;
    }
    return extents;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#pages.clear();
    this.#groupCounts.clear();
  }

  #check(offset: number, length: number): void {
    assert.ok(!this.#closed, 'memory device used after close');
    assertRange(offset, length, this.size);
  }

  #pageForWrite(index: number): Buffer {
    let page = this.#pages.get(index);
    if (page === undefined) {
      page = Buffer.alloc(this.#pageSize);
      this.#pages.set(index, page);
      const group = Math.floor(index / PAGES_PER_GROUP);
      this.#groupCounts.set(group, (this.#groupCounts.get(group) ?? 0) + 1);
    }
    return page;
  }

  #dropPage(index: number): void {
    this.#pages.delete(index);
    const group = Math.floor(index / PAGES_PER_GROUP);
    const count = (this.#groupCounts.get(group) ?? 0) - 1;
    if (count > 0) this.#groupCounts.set(group, count);
    else this.#groupCounts.delete(group);
  }

  /** Zeroes the present pages of a range; with `dropWhole`, pages it covers entirely go away. */
  #zeroRange(offset: number, length: number, dropWhole: boolean): void {
    if (length === 0) return;
    const pageSize = this.#pageSize;
    const end = offset + length;
    const endPage = Math.ceil(end / pageSize);
    for (let index = this.#nextPresentPage(Math.floor(offset / pageSize), endPage); index >= 0;
      index = this.#nextPresentPage(index + 1, endPage)) {
      const pageStart = index * pageSize;
      const from = Math.max(offset, pageStart);
      const to = Math.min(end, pageStart + pageSize);
      // The last page may reach past the device's end; covering up to the end covers it all.
      const whole = from === pageStart && to >= Math.min(pageStart + pageSize, this.size);
      if (whole && dropWhole) this.#dropPage(index);
      else this.#pages.get(index)!.fill(0, from - pageStart, to - pageStart);
    }
  }

  /** The first present page index in [from, limit), or -1. */
  #nextPresentPage(from: number, limit: number): number {
    let index = from;
    while (index < limit) {
      const group = Math.floor(index / PAGES_PER_GROUP);
      if (this.#groupCounts.has(group)) {
        const groupEnd = Math.min((group + 1) * PAGES_PER_GROUP, limit);
        for (; index < groupEnd; index++) {
          if (this.#pages.has(index)) return index;
        }
      } else {
        const nextGroup = this.#nextPresentGroup(group + 1, Math.ceil(limit / PAGES_PER_GROUP));
        if (nextGroup < 0) return -1;
        index = nextGroup * PAGES_PER_GROUP;
      }
    }
    return -1;
  }

  /** The first group index in [from, limit) holding a page, or -1. */
  #nextPresentGroup(from: number, limit: number): number {
    if (limit - from <= this.#groupCounts.size) {
      for (let group = from; group < limit; group++) {
        if (this.#groupCounts.has(group)) return group;
      }
      return -1;
    }
    let best = -1;
    for (const group of this.#groupCounts.keys()) {
      if (group >= from && group < limit && (best < 0 || group < best)) best = group;
    }
    return best;
  }
}
