// The one test-only NBD client, in two modes over the same socket and inbox:
// - raw (every test that speaks the protocol byte by byte): a byte reader where every wait has a
//   deadline, and handshake and reply helpers; it checks nothing on its own beyond framing, and
//   tests assert on what it returns;
// - pipelined (the campaigns, open()): after GO, many requests in flight, simple replies matched
//   by cookie as they arrive, each request a promise.
// Request bytes are built by hand from the spec's numbers (test/support/wire.ts), never with the
// server's codec.
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import {
  be16,
  be32,
  be64,
  CHUNK,
  clientFlags,
  CMD,
  DONE,
  extRequest,
  infoData,
  INFO,
  isErrorReply,
  metaData,
  option,
  OPT,
  parseInfoExport,
  parseOptionReply,
  REP,
  request,
  W,
  type Chunk,
  type OptionReply,
  type RequestFields,
} from './wire.ts';

export type Target = { readonly path: string } | { readonly host: string; readonly port: number };

/** Default deadline for one read; generous for a loaded CI machine, short enough to fail fast. */
export const READ_TIMEOUT_MS = 3000;

export interface SimpleReply {
  readonly magic: number;
  readonly error: number;
  readonly cookie: bigint;
  readonly data: Buffer;
}

/** A pipelined request that got an error reply (the errno is the NBD value). */
export class NbdRequestError extends Error {
  readonly errno: number;
  constructor(errno: number, what: string) {
    super(`${what} failed with NBD error ${errno}`);
    this.errno = errno;
  }
}

/** The connection went away with a pipelined request unanswered (the daemon died, or we closed it). */
export class NbdClosedError extends Error {}

interface Pending {
  readonly what: string;
  readonly readLength: number;
  resolve(data: Buffer): void;
  reject(err: Error): void;
}

const CMD_NAMES = ['READ', 'WRITE', 'DISC', 'FLUSH', 'TRIM', 'CACHE', 'WRITE_ZEROES'];

export class TestClient {
  /** The connection's socket: a TLSSocket after startTls(). */
  socket: Socket;
  private readonly inbox: Buffer[] = [];
  private have = 0;
  private isClosed = false;
  private closeError: Error | undefined;
  private wake: (() => void) | null = null;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  /** Header style the client negotiated; decides request and reply framing. */
  extended = false;
  /** Default deadline of one raw read. */
  readTimeoutMs = READ_TIMEOUT_MS;
  /** The export's size in bytes (set by open()). */
  size = 0;
  /** Requests awaiting replies; null until the client is pipelined (open()). */
  private pending: Map<bigint, Pending> | null = null;
  private nextCookie = 1n;
  /** A READ reply whose header is in and whose data is still arriving. */
  private replyData: { cookie: bigint; length: number } | null = null;
  /** Why pipelined requests now fail (the connection closed, or a malformed reply). */
  private failure: Error | null = null;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
    this.attach(socket);
  }

  private attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.inbox.push(chunk);
      this.have += chunk.length;
      if (this.pending !== null) this.pump();
      else this.wake?.();
    });
    socket.on('error', (err) => {
      this.closeError = err;
    });
    socket.on('close', () => {
      this.isClosed = true;
      if (this.pending !== null) this.failAll(new NbdClosedError('connection closed'));
      this.wake?.();
      this.resolveClosed();
    });
  }

  /**
   * After the server ACKed STARTTLS: runs Node's TLS client over this connection; resolves once
   * the handshake is done, rejects if it fails (the server refused the client, say).
   */
  startTls(options: ConnectionOptions, timeoutMs = this.readTimeoutMs): Promise<TLSSocket> {
    if (this.have !== 0) throw new Error(`startTls with ${this.have} unread bytes`);
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.on('error', () => {});
    const tls = tlsConnect({ ...options, socket: plain });
    this.socket = tls;
    this.attach(tls);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`TLS handshake not done within ${timeoutMs} ms`)), timeoutMs);
      tls.once('secureConnect', () => {
        clearTimeout(timer);
        resolve(tls);
      });
      tls.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      tls.once('close', () => {
        clearTimeout(timer);
        reject(new Error('closed during the TLS handshake'));
      });
    });
  }

  static connect(target: Target, timeoutMs = READ_TIMEOUT_MS): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const socket = 'path' in target ? connect({ path: target.path }) : connect({ host: target.host, port: target.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new TestClient(socket));
      });
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', onError);
    });
  }

  /** The socket closed (or, pipelined, a malformed reply ended the connection). */
  get closed(): boolean {
    return this.isClosed || this.failure !== null;
  }

  /** Bytes received and not yet read. */
  get buffered(): number {
    return this.have;
  }

  write(bytes: Buffer): boolean {
    return this.socket.write(bytes);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Exactly `n` bytes, or a rejection on timeout or on close before they arrived. */
  read(n: number, timeoutMs = this.readTimeoutMs): Promise<Buffer> {
    if (this.pending !== null) return Promise.reject(new Error('TestClient: no raw reads once pipelined'));
    if (this.wake !== null) return Promise.reject(new Error('TestClient: one read at a time'));
    return new Promise((resolve, reject) => {
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        this.wake = null;
        if (err !== undefined) reject(err);
        else resolve(this.take(n));
      };
      const check = (): void => {
        if (this.have >= n) finish();
        else if (this.isClosed) {
          finish(new Error(`connection closed with ${this.have} of ${n} wanted bytes${this.closeError ? ` (${this.closeError.message})` : ''}`));
        }
      };
      const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${n} bytes (have ${this.have})`)), timeoutMs);
      this.wake = check;
      check();
    });
  }

  /** Resolves with whatever arrived unread once the server closes; rejects if it stays open. */
  async expectClose(timeoutMs = this.readTimeoutMs): Promise<Buffer> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`server did not close within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([this.closedPromise, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return this.take(this.have);
  }

  /** Waits `ms` and asserts that nothing arrived meanwhile. */
  async expectSilence(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    if (this.have !== 0) throw new Error(`expected silence, got ${this.have} bytes: ${this.take(this.have).toString('hex')}`);
  }

  private take(n: number): Buffer {
    const all = this.inbox.length === 1 ? this.inbox[0]! : Buffer.concat(this.inbox);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.inbox.length = 0;
    if (rest.length > 0) this.inbox.push(rest);
    this.have = rest.length;
    return out;
  }

  // ---- handshake ----

  /** Reads the 18-byte greeting and returns its handshake flags (after checking both magics). */
  async greeting(): Promise<number> {
    const g = await this.read(18);
    if (be64(g, 0) !== W.NBDMAGIC || be64(g, 8) !== W.IHAVEOPT) throw new Error(`bad greeting ${g.toString('hex')}`);
    return be16(g, 16);
  }

  /** Greeting, then the client flags (fixed newstyle + no zeroes by default). */
  async start(flags = 0x3): Promise<void> {
    await this.greeting();
    this.write(clientFlags(flags));
  }

  /** One option reply, header and payload. */
  async optionReply(): Promise<OptionReply> {
    const head = await this.read(20);
    const payload = await this.read(be32(head, 16));
    return parseOptionReply(Buffer.concat([head, payload]));
  }

  /** Sends an option and collects replies up to the final one (ACK or an error). */
  async opt(opt: number, data?: Buffer): Promise<OptionReply[]> {
    this.write(option(opt, data));
    const replies: OptionReply[] = [];
    for (;;) {
      const r = await this.optionReply();
      replies.push(r);
      if (r.type === REP.ACK || isErrorReply(r.type)) return replies;
    }
  }

  /** GO; returns the export's size and flags, or throws with the error reply. */
  async go(name = '', infos: readonly number[] = []): Promise<{ size: bigint; flags: number; replies: OptionReply[] }> {
    const replies = await this.opt(OPT.GO, infoData(name, infos));
    const last = replies.at(-1)!;
    if (last.type !== REP.ACK) throw new Error(`GO failed: 0x${last.type.toString(16)} ${last.payload.toString('utf8')}`);
    const exp = replies.find((r) => r.type === REP.INFO && be16(r.payload, 0) === INFO.EXPORT);
    if (exp === undefined) throw new Error('GO without INFO_EXPORT');
    return { ...parseInfoExport(exp.payload), replies };
  }

  /** A full handshake to transmission: greeting, flags, options to negotiate, GO. */
  async negotiate(opts: { name?: string; structured?: boolean; extended?: boolean; meta?: string[] } = {}): Promise<{
    size: bigint;
    flags: number;
    contextIds: Map<string, number>;
  }> {
    await this.start();
    if (opts.extended === true) {
      const r = await this.opt(OPT.EXTENDED_HEADERS);
      if (r.length !== 1 || r[0]!.type !== REP.ACK) throw new Error('EXTENDED_HEADERS refused');
      this.extended = true;
    } else if (opts.structured === true) {
      const r = await this.opt(OPT.STRUCTURED_REPLY);
      if (r.length !== 1 || r[0]!.type !== REP.ACK) throw new Error('STRUCTURED_REPLY refused');
    }
    const contextIds = new Map<string, number>();
    if (opts.meta !== undefined) {
      const replies = await this.opt(OPT.SET_META_CONTEXT, metaData(opts.name ?? '', opts.meta));
      if (replies.at(-1)!.type !== REP.ACK) throw new Error('SET_META_CONTEXT failed');
      for (const r of replies.slice(0, -1)) contextIds.set(r.payload.subarray(4).toString('utf8'), be32(r.payload, 0));
    }
    const { size, flags } = await this.go(opts.name ?? '');
    return { size, flags, contextIds };
  }

  // ---- transmission ----

  /** Writes one request in the negotiated header style. */
  send(r: RequestFields): boolean {
    return this.write(this.extended ? extRequest(r) : request(r));
  }

  /**
   * One simple reply. On success `dataLength` bytes follow it (a READ's length, or a function of
   * the cookie when replies to different READs may come in any order); an error carries none.
   */
  async simpleReply(dataLength: number | ((cookie: bigint) => number) = 0, timeoutMs = this.readTimeoutMs): Promise<SimpleReply> {
    const head = await this.read(16, timeoutMs);
    const magic = be32(head, 0);
    if (magic !== W.SIMPLE_REPLY_MAGIC) throw new Error(`not a simple reply: ${head.toString('hex')}`);
    const error = be32(head, 4);
    const cookie = be64(head, 8);
    const n = typeof dataLength === 'number' ? dataLength : dataLength(cookie);
    const data = error === 0 && n > 0 ? await this.read(n, timeoutMs) : Buffer.alloc(0);
    return { magic, error, cookie, data };
  }

  /** One chunk in the negotiated style (20-byte structured or 32-byte extended header). */
  async chunk(timeoutMs = this.readTimeoutMs): Promise<Chunk> {
    if (this.extended) {
      const head = await this.read(32, timeoutMs);
      if (be32(head, 0) !== W.EXTENDED_REPLY_MAGIC) throw new Error(`not an extended reply: ${head.toString('hex')}`);
      const length = Number(be64(head, 24));
      const payload = await this.read(length, timeoutMs);
      return { flags: be16(head, 4), type: be16(head, 6), cookie: be64(head, 8), offset: be64(head, 16), payload };
    }
    const head = await this.read(20, timeoutMs);
    if (be32(head, 0) !== W.STRUCTURED_REPLY_MAGIC) throw new Error(`not a structured reply: ${head.toString('hex')}`);
    const payload = await this.read(be32(head, 16), timeoutMs);
    return { flags: be16(head, 4), type: be16(head, 6), cookie: be64(head, 8), payload };
  }

  /**
   * The reply to a command that carries no data back: with structured replies the server may send
   * a simple reply or chunks, so the magic decides. Returns the error (0 on success) and cookie.
   */
  async reply(timeoutMs = this.readTimeoutMs): Promise<{ error: number; cookie: bigint; chunks: Chunk[] }> {
    const magic = be32(await this.peek(4, timeoutMs), 0);
    if (magic === W.SIMPLE_REPLY_MAGIC) {
      const r = await this.simpleReply(0, timeoutMs);
      return { error: r.error, cookie: r.cookie, chunks: [] };
    }
    const chunks = await this.chunks(timeoutMs);
    const failed = chunks.find((c) => c.type === CHUNK.ERROR || c.type === CHUNK.ERROR_OFFSET);
    return { error: failed === undefined ? 0 : be32(failed.payload, 0), cookie: chunks[0]!.cookie, chunks };
  }

  /** The next `n` bytes without consuming them. */
  async peek(n: number, timeoutMs = this.readTimeoutMs): Promise<Buffer> {
    const bytes = await this.read(n, timeoutMs);
    this.inbox.unshift(bytes);
    this.have += bytes.length;
    return bytes;
  }

  /** Chunks up to and including the one with DONE (for one request at a time). */
  async chunks(timeoutMs = this.readTimeoutMs): Promise<Chunk[]> {
    const out: Chunk[] = [];
    for (;;) {
      const c = await this.chunk(timeoutMs);
      out.push(c);
      if ((c.flags & DONE) !== 0) return out;
    }
  }

  /** Sends DISC and waits for the server to close; returns any bytes that came first. */
  async disconnect(timeoutMs = this.readTimeoutMs): Promise<Buffer> {
    this.send({ type: CMD.DISC, cookie: 0n });
    return this.expectClose(timeoutMs);
  }

  // ---- pipelined (the campaigns) ----

  /** Connects to a Unix socket, negotiates `exportName` with GO (simple replies) and pipelines. */
  static async open(path: string, exportName: string, timeoutMs = 10_000): Promise<TestClient> {
    const client = await TestClient.connect({ path }, timeoutMs);
    try {
      client.readTimeoutMs = timeoutMs;
      const { size } = await client.negotiate({ name: exportName });
      client.size = Number(size);
    } catch (err) {
      client.destroy();
      throw err;
    }
    client.pending = new Map();
    client.pump(); // replies cannot have come yet, but the handshake may have left bytes
    return client;
  }

  get inFlight(): number {
    return this.pending?.size ?? 0;
  }

  readAt(offset: number, length: number): Promise<Buffer> {
    return this.request(CMD.READ, 0, offset, length, null, length);
  }

  writeAt(offset: number, data: Buffer, flags = 0): Promise<void> {
    return this.request(CMD.WRITE, flags, offset, data.length, data, 0).then(() => {});
  }

  flush(): Promise<void> {
    return this.request(CMD.FLUSH, 0, 0, 0, null, 0).then(() => {});
  }

  trim(offset: number, length: number, flags = 0): Promise<void> {
    return this.request(CMD.TRIM, flags, offset, length, null, 0).then(() => {});
  }

  zero(offset: number, length: number, flags = 0): Promise<void> {
    return this.request(CMD.WRITE_ZEROES, flags, offset, length, null, 0).then(() => {});
  }

  /** DISC, then wait (bounded) for the server to close; never throws (the daemon may be gone). */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.closed) return;
    this.socket.write(request({ type: CMD.DISC }));
    this.socket.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.closedPromise, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.socket.destroy();
  }

  private request(type: number, flags: number, offset: number, length: number, payload: Buffer | null, readLength: number): Promise<Buffer> {
    if (this.pending === null) return Promise.reject(new Error('TestClient: requests need a pipelined client (open())'));
    if (this.failure) return Promise.reject(this.failure);
    const pending = this.pending;
    const cookie = this.nextCookie++;
    const what = `${CMD_NAMES[type]} ${offset}+${length}`;
    return new Promise<Buffer>((resolve, reject) => {
      pending.set(cookie, { what, readLength, resolve, reject });
      // The header alone, then the payload as it is: no copy of the data.
      const header = request({ type, flags, cookie, offset, length });
      if (payload) {
        this.socket.cork();
        this.socket.write(header);
        this.socket.write(payload);
        this.socket.uncork();
      } else {
        this.socket.write(header);
      }
    });
  }

  /** Settles every request whose reply is complete in the inbox. */
  private pump(): void {
    const pending = this.pending!;
    for (;;) {
      if (this.replyData) {
        if (this.have < this.replyData.length) return;
        const data = this.take(this.replyData.length);
        const p = pending.get(this.replyData.cookie)!;
        pending.delete(this.replyData.cookie);
        this.replyData = null;
        p.resolve(data);
        continue;
      }
      if (this.have < 16) return;
      const head = this.take(16);
      if (head.readUInt32BE(0) !== W.SIMPLE_REPLY_MAGIC) {
        this.socket.destroy();
        this.failAll(new Error(`bad reply magic ${head.toString('hex')}`));
        return;
      }
      const errno = head.readUInt32BE(4);
      const cookie = head.readBigUInt64BE(8);
      const p = pending.get(cookie);
      if (!p) {
        this.socket.destroy();
        this.failAll(new Error(`reply to unknown cookie ${cookie}`));
        return;
      }
      if (errno === 0 && p.readLength > 0) {
        this.replyData = { cookie, length: p.readLength };
        continue;
      }
      pending.delete(cookie);
      if (errno === 0) p.resolve(Buffer.alloc(0));
      else p.reject(new NbdRequestError(errno, p.what));
    }
  }

  private failAll(err: Error): void {
    this.failure ??= err;
    const waiting = [...this.pending!.values()];
    this.pending!.clear();
    for (const p of waiting) p.reject(err);
  }
}
