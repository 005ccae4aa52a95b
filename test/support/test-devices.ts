// Test-only BlockDevice wrappers: count what reaches the device, and hold or fail chosen calls so
// tests can force out-of-order completion, requests in flight at DISC or shutdown, and I/O errors.
import type {
  BlockDevice,
  BlockSizes,
  DeviceCapabilities,
  DeviceExtent,
  WriteOptions,
  ZeroOptions,
} from '../../src/engine/block-device.ts';

export type DeviceOp = 'read' | 'write' | 'flush' | 'trim' | 'zero' | 'cache' | 'blockStatus';

/**
 * Runs before each call reaches the inner device. It may wait (to delay the call) or throw (to fail
 * it); whatever it throws is what the server sees from the device.
 */
export type DeviceHook = (op: DeviceOp, offset: number, length: number) => Promise<void> | void;

export class InstrumentedDevice implements BlockDevice {
  readonly inner: BlockDevice;
  hook: DeviceHook | undefined;
  /** Calls that reached the device (counted before the hook runs). */
  readonly calls: Record<DeviceOp, number> = { read: 0, write: 0, flush: 0, trim: 0, zero: 0, cache: 0, blockStatus: 0 };
  /** Writes, trims and zeroes that asked for FUA. */
  fuaCalls = 0;
  /** Calls started and not yet finished. */
  active = 0;

  constructor(inner: BlockDevice, hook?: DeviceHook) {
    this.inner = inner;
    this.hook = hook;
  }

  get size(): number {
    return this.inner.size;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get blockSizes(): BlockSizes {
    return this.inner.blockSizes;
  }
  get capabilities(): DeviceCapabilities {
    return this.inner.capabilities;
  }

  private async run<T>(op: DeviceOp, offset: number, length: number, call: () => Promise<T>): Promise<T> {
    this.calls[op]++;
    this.active++;
    try {
      await this.hook?.(op, offset, length);
      return await call();
    } finally {
      this.active--;
    }
  }

  read(into: Buffer, offset: number): Promise<void> {
    return this.run('read', offset, into.length, () => this.inner.read(into, offset));
  }
  write(data: Buffer, offset: number, options: WriteOptions): Promise<void> {
    if (options.fua) this.fuaCalls++;
    return this.run('write', offset, data.length, () => this.inner.write(data, offset, options));
  }
  flush(): Promise<void> {
    return this.run('flush', 0, 0, () => this.inner.flush());
  }
  trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    if (options.fua) this.fuaCalls++;
    return this.run('trim', offset, length, () => this.inner.trim(offset, length, options));
  }
  zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    if (options.fua) this.fuaCalls++;
    return this.run('zero', offset, length, () => this.inner.zero(offset, length, options));
  }
  cache(offset: number, length: number): Promise<void> {
    return this.run('cache', offset, length, () => this.inner.cache(offset, length));
  }
  blockStatus(offset: number, length: number): Promise<DeviceExtent[]> {
    return this.run('blockStatus', offset, length, () => this.inner.blockStatus(offset, length));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A promise that a test resolves by hand: `await gate.wait` inside a hook holds a device call. */
export class Gate {
  readonly wait: Promise<void>;
  open!: () => void;
  constructor() {
    this.wait = new Promise((resolve) => (this.open = resolve));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every few ms until it is true; throws after `timeoutMs`. */
export async function until(check: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}
