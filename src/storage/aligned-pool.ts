// Page-aligned I/O buffers for O_DIRECT. Node's Buffers are not address-aligned, but a
// WebAssembly.Memory's backing store is allocated in whole pages, so views into it at multiples of
// 4096 are aligned well beyond the 512 bytes O_DIRECT needs. One pool per process: fixed slots,
// handed out first come, first served; a caller holds at most one slot at a time (no deadlock).
export const SLOT_BYTES = 1 << 20;
const SLOTS = 16;
const WASM_PAGE = 65536;

/** The one piece of the WebAssembly API used here (tsconfig's libs do not declare it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
const { Memory } = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => WasmMemory } }).WebAssembly;

export class AlignedPool {
  private readonly free: Buffer[] = [];
  private readonly waiting: Array<(slot: Buffer) => void> = [];

  constructor(slots = SLOTS, slotBytes = SLOT_BYTES) {
    const pages = Math.ceil((slots * slotBytes) / WASM_PAGE);
    const memory = new Memory({ initial: pages, maximum: pages });
    for (let i = 0; i < slots; i++) this.free.push(Buffer.from(memory.buffer, i * slotBytes, slotBytes));
  }

  /** A whole slot (SLOT_BYTES); waits for one when all are in use. */
  acquire(): Promise<Buffer> {
    const slot = this.free.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(slot: Buffer): void {
    const next = this.waiting.shift();
    if (next !== undefined) next(slot);
    else this.free.push(slot);
  }

  /** Runs `fn` with a slot, returning it afterwards whatever happens. */
  async with<T>(fn: (slot: Buffer) => Promise<T>): Promise<T> {
    const slot = await this.acquire();
    try {
      return await fn(slot);
    } finally {
      this.release(slot);
    }
  }
}

let shared: AlignedPool | null = null;

/** The process's pool, made on first use (16 MiB). */
export function alignedPool(): AlignedPool {
  shared ??= new AlignedPool();
  return shared;
}
