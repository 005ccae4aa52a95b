// An in-process ObjectStore as strict as a real bucket, with fault injection, for the object-store
// image's unit tests (src/fs/object). What it promises, like S3 and radosgw:
// - conditional writes are atomic: of two racing putIfAbsent calls on one key exactly one wins,
//   the other rejects with ObjectConflict; putIfMatch wins only while the etag is unchanged;
// - every write gives a new etag (even the same bytes again), never reused;
// - a ranged get that starts at or past the end is an error (S3 answers 416 InvalidRange:
//   STORE_UNAVAILABLE is not right for it, so it is IO); a range that starts inside and runs
//   past the end returns the bytes up to the end (S3 clamps the same way); a get of an absent key
//   is null;
// - list yields keys in lexicographic (UTF-8 byte) order, in pages of `pageSize`, each page read
//   at its own moment (so a list interleaved with writes sees what a paginated S3 list sees);
// - every call completes asynchronously (never within the caller's tick).
// Faults: fail the Nth call, fail a fraction of calls (seeded), hang calls, and crash (after a
// chosen PUT completes, every later call fails and nothing more becomes durable; `durable()`
// gives a store holding what had been written, for a restart). Counters of calls and bytes.
import { IomapdError } from '../../src/util/errors.ts';
import { seededRandom } from './seeded-random.ts';
import { ObjectConflict, type ObjectBody, type ObjectInfo, type ObjectStore } from '../../src/storage/object-store.ts';

export type CallKind = 'putIfAbsent' | 'putIfMatch' | 'get' | 'head' | 'list' | 'delete';

interface Stored {
  body: Buffer;
  etag: string;
}

export interface FakeCounters {
  calls: Record<CallKind, number>;
  bytesWritten: number;
  bytesRead: number;
  failures: number;
}

/** Which calls a fault applies to: a kind, 'put' for both put kinds, or 'any'. */
export type CallFilter = CallKind | 'put' | 'any';

function matches(filter: CallFilter, kind: CallKind): boolean {
  return filter === 'any' || filter === kind || (filter === 'put' && (kind === 'putIfAbsent' || kind === 'putIfMatch'));
}

export class FakeObjectStore implements ObjectStore {
  readonly description: string;
  private readonly objects: Map<string, Stored>;
  private nextEtag = 1;
  readonly pageSize: number;
  readonly counters: FakeCounters = {
    calls: { putIfAbsent: 0, putIfMatch: 0, get: 0, head: 0, list: 0, delete: 0 },
    bytesWritten: 0,
    bytesRead: 0,
    failures: 0,
  };
  private callNo = 0;
  private failAt = new Map<number, IomapdError>();
  private fraction: { p: number; filter: CallFilter; random: () => number } | null = null;
  private down: CallFilter | null = null;
  private hangFilter: CallFilter | null = null;
  private hung: Array<() => void> = [];
  private ambiguous: { p: number; random: () => number } | null = null;
  private jitter: { ticks: number; random: () => number } | null = null;
  private crashAfterPuts: number | null = null;
  private readonly ignoring = new Set<'If-None-Match' | 'If-Match'>();
  private putsDone = 0;
  crashed = false;

  constructor(opts: { description?: string; pageSize?: number; objects?: Map<string, Stored> } = {}) {
    this.description = opts.description ?? 'fake object store';
    this.pageSize = opts.pageSize ?? 3;
    this.objects = opts.objects ?? new Map();
  }

  // ------------------------------------------------------------------ fault injection

  /** The call numbered `n` (1-based, counting every call from now on) fails with a transient error. */
  failCall(n: number, err = transient()): void {
    this.failAt.set(this.callNo + n, err);
  }

  /** Each matching call fails with probability p (seeded), as a store's retries gave up on it. */
  failFraction(p: number, seed = 1, filter: CallFilter = 'any'): void {
    this.fraction = p > 0 ? { p, filter, random: seededRandom(seed) } : null;
  }

  /**
   * Each PUT, with probability p (seeded), lands in the store and still rejects: the client saw a
   * timeout or reset after the store had applied it, so the outcome is unknown to the caller.
   */
  ambiguousPuts(p: number, seed = 1): void {
    this.ambiguous = p > 0 ? { p, random: seededRandom(seed) } : null;
  }

  /**
   * Each call waits a seeded random number of event-loop turns (0..ticks) before it takes effect,
   * so concurrent calls complete in any order, as they do against a real store.
   */
  reorder(ticks: number, seed = 1): void {
    this.jitter = ticks > 0 ? { ticks, random: seededRandom(seed) } : null;
  }

  /** Accepts the precondition header and ignores it, as s3rver does (for the start-up probe's tests). */
  ignorePrecondition(header: 'If-None-Match' | 'If-Match'): void {
    this.ignoring.add(header);
  }

  /** Every matching call fails until up(): a store that is down. */
  goDown(filter: CallFilter = 'any'): void {
    this.down = filter;
  }

  up(): void {
    this.down = null;
  }

  /** Matching calls never complete until release() (a hung connection). */
  hang(filter: CallFilter = 'any'): void {
    this.hangFilter = filter;
  }

  /** Lets every hung call proceed and stops hanging new ones. */
  release(): void {
    this.hangFilter = null;
    const waiting = this.hung;
    this.hung = [];
    for (const go of waiting) go();
  }

  get hungCalls(): number {
    return this.hung.length;
  }

  /** After `puts` more PUTs complete, the store "crashes": every later call fails. */
  crashAfter(puts: number): void {
    this.crashAfterPuts = this.putsDone + puts;
    if (puts <= 0) this.crashed = true;
  }

  /** A store holding exactly what is durable now (the bucket a restarted process sees). */
  durable(): FakeObjectStore {
    const copy = new Map<string, Stored>();
    for (const [k, v] of this.objects) copy.set(k, { body: Buffer.from(v.body), etag: v.etag });
    const s = new FakeObjectStore({ description: this.description, pageSize: this.pageSize, objects: copy });
    s.nextEtag = this.nextEtag;
    return s;
  }

  // ------------------------------------------------------------------ inspection (tests)

  keys(): string[] {
    return [...this.objects.keys()].sort(compareKeys);
  }

  get totalBytes(): number {
    let n = 0;
    for (const v of this.objects.values()) n += v.body.length;
    return n;
  }

  /** Reads an object directly, bypassing faults and counters. */
  peek(key: string): Buffer | null {
    return this.objects.get(key)?.body ?? null;
  }

  /** Writes an object directly, bypassing faults and preconditions (tests build damage with it). */
  poke(key: string, body: Buffer): void {
    this.objects.set(key, { body: Buffer.from(body), etag: this.etag() });
  }

  // ------------------------------------------------------------------ ObjectStore

  async putIfAbsent(key: string, body: Buffer): Promise<string> {
    await this.enter('putIfAbsent');
    if (this.objects.has(key) && !this.ignoring.has('If-None-Match')) throw new ObjectConflict(key);
    return this.landed(this.store(key, body));
  }

  async putIfMatch(key: string, body: Buffer, etag: string): Promise<string> {
    await this.enter('putIfMatch');
    const cur = this.objects.get(key);
    if ((!cur || cur.etag !== etag) && !this.ignoring.has('If-Match')) throw new ObjectConflict(key);
    return this.landed(this.store(key, body));
  }

  async get(key: string, range?: { offset: number; length: number }): Promise<ObjectBody | null> {
    await this.enter('get');
    const cur = this.objects.get(key);
    if (!cur) return null;
    let body = cur.body;
    if (range) {
      if (!Number.isSafeInteger(range.offset) || range.offset < 0 || !(range.length > 0)) {
        throw new IomapdError('BAD_ARGUMENT', `bad range ${range.offset}+${range.length} for ${key}`);
      }
      if (range.offset >= body.length) throw new IomapdError('IO', `range ${range.offset}+${range.length} is not satisfiable for ${key} (${body.length} bytes)`);
      body = body.subarray(range.offset, Math.min(body.length, range.offset + range.length));
    }
    this.counters.bytesRead += body.length;
    return { body: Buffer.from(body), etag: cur.etag };
  }

  async head(key: string): Promise<ObjectInfo | null> {
    await this.enter('head');
    const cur = this.objects.get(key);
    return cur ? { key, size: cur.body.length, etag: cur.etag } : null;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let after: string | null = null;
    for (;;) {
      // Each page is one call, taken at its own moment, as S3's ListObjectsV2 pages are.
      await this.enter('list');
      const page = [...this.objects.entries()]
        .filter(([k]) => k.startsWith(prefix) && (after === null || compareKeys(k, after) > 0))
        .sort((a, b) => compareKeys(a[0], b[0]))
        .slice(0, this.pageSize);
      for (const [key, v] of page) yield { key, size: v.body.length, etag: v.etag };
      if (page.length < this.pageSize) return;
      after = page[page.length - 1]![0];
    }
  }

  async delete(key: string): Promise<void> {
    await this.enter('delete');
    this.objects.delete(key);
  }

  // ------------------------------------------------------------------ internals

  private etag(): string {
    return `fake-${(this.nextEtag++).toString(16).padStart(8, '0')}`;
  }

  private store(key: string, body: Buffer): string {
    const etag = this.etag();
    this.objects.set(key, { body: Buffer.from(body), etag });
    this.counters.bytesWritten += body.length;
    this.putsDone++;
    if (this.crashAfterPuts !== null && this.putsDone >= this.crashAfterPuts) this.crashed = true;
    return etag;
  }

  /** A stored PUT's answer, unless an ambiguous failure hides it from the caller. */
  private landed(etag: string): string {
    if (this.ambiguous && this.ambiguous.random() < this.ambiguous.p) {
      this.counters.failures++;
      throw new IomapdError('STORE_UNAVAILABLE', 'fake object store: injected timeout after the PUT was applied');
    }
    return etag;
  }

  /** Counts the call, applies faults, and always yields to the event loop first. */
  private async enter(kind: CallKind): Promise<void> {
    this.counters.calls[kind]++;
    const n = ++this.callNo;
    const turns = 1 + (this.jitter ? Math.floor(this.jitter.random() * (this.jitter.ticks + 1)) : 0);
    for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
    if (this.hangFilter !== null && matches(this.hangFilter, kind)) await new Promise<void>((r) => this.hung.push(r));
    let err: IomapdError | null = null;
    if (this.crashed) err = new IomapdError('STORE_UNAVAILABLE', 'fake object store crashed');
    else if (this.failAt.has(n)) err = this.failAt.get(n)!;
    else if (this.down !== null && matches(this.down, kind)) err = transient();
    else if (this.fraction && matches(this.fraction.filter, kind) && this.fraction.random() < this.fraction.p) err = transient();
    this.failAt.delete(n);
    if (err) {
      this.counters.failures++;
      throw err;
    }
  }
}

/** What a real implementation raises once its retries gave up. */
export function transient(): IomapdError {
  return new IomapdError('STORE_UNAVAILABLE', 'fake object store: injected transient failure (503 SlowDown after retries)');
}

/** S3 orders keys by their UTF-8 bytes. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * One process's connection to a shared store: it "crashes" on its own after `puts` of its PUTs
 * completed (every later call of this client fails; other clients go on), so a test can kill one
 * host in the middle of an open or a commit while another keeps using the bucket.
 */
export class CrashingClient implements ObjectStore {
  private readonly inner: ObjectStore;
  private readonly limit: number;
  private done = 0;

  constructor(inner: ObjectStore, puts: number) {
    this.inner = inner;
    this.limit = puts;
  }

  get description(): string {
    return this.inner.description;
  }

  get crashed(): boolean {
    return this.done >= this.limit;
  }

  private check(): void {
    if (this.crashed) throw new IomapdError('STORE_UNAVAILABLE', 'this client crashed');
  }

  private async put(run: () => Promise<string>): Promise<string> {
    this.check();
    const etag = await run();
    this.done++;
    return etag;
  }

  putIfAbsent(key: string, body: Buffer): Promise<string> {
    return this.put(() => this.inner.putIfAbsent(key, body));
  }

  putIfMatch(key: string, body: Buffer, etag: string): Promise<string> {
    return this.put(() => this.inner.putIfMatch(key, body, etag));
  }

  async get(key: string, range?: { offset: number; length: number }): Promise<ObjectBody | null> {
    this.check();
    return this.inner.get(key, range);
  }

  async head(key: string): Promise<ObjectInfo | null> {
    this.check();
    return this.inner.head(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.check();
    yield* this.inner.list(prefix);
  }

  async delete(key: string): Promise<void> {
    this.check();
    await this.inner.delete(key);
  }
}
