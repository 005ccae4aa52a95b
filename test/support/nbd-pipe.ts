// A small pipelined NBD client for the campaigns: fixed newstyle, GO, simple replies only, many
// requests in flight, replies matched by cookie. Request and reply bytes are built by hand from
// the spec's numbers (protocol.md §1), not with the server's codec. Every wait is bounded.
import { connect, type Socket } from 'node:net';

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;

export const Cmd = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6 } as const;
export const Flag = { FUA: 1, NO_HOLE: 2 } as const;

/** A request that got an error reply (the errno is the NBD value). */
export class NbdRequestError extends Error {
  readonly errno: number;
  constructor(errno: number, what: string) {
    super(`${what} failed with NBD error ${errno}`);
    this.errno = errno;
  }
}

/** The connection went away with the request unanswered (the daemon died, or we closed it). */
export class NbdClosedError extends Error {}

interface Pending {
  readonly what: string;
  readonly readLength: number;
  resolve(data: Buffer): void;
  reject(err: Error): void;
}

export class NbdPipe {
  readonly size: number;
  private readonly socket: Socket;
  private readonly pending = new Map<bigint, Pending>();
  private nextCookie = 1n;
  private inbox: Buffer[] = [];
  private have = 0;
  private closedError: Error | null = null;
  /** A READ reply whose header is in and whose data is still arriving. */
  private reading: { cookie: bigint; length: number } | null = null;

  private constructor(socket: Socket, size: number) {
    this.socket = socket;
    this.size = size;
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => {});
    socket.on('close', () => this.failAll(new NbdClosedError('connection closed')));
  }

  /** Connects to a Unix socket and negotiates `exportName` with GO. */
  static async open(path: string, exportName: string, timeoutMs = 10_000): Promise<NbdPipe> {
    const socket = connect({ path });
    socket.setNoDelay(true);
    const reader = new HandshakeReader(socket, timeoutMs);
    try {
      await reader.connected;
      const greeting = await reader.read(18);
      if (greeting.readBigUInt64BE(0) !== NBDMAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('bad greeting');
      const name = Buffer.from(exportName, 'utf8');
      const go = Buffer.alloc(4 + 16 + 4 + name.length + 2);
      go.writeUInt32BE(3, 0); // C_FIXED_NEWSTYLE | C_NO_ZEROES
      go.writeBigUInt64BE(IHAVEOPT, 4);
      go.writeUInt32BE(OPT_GO, 12);
      go.writeUInt32BE(4 + name.length + 2, 16);
      go.writeUInt32BE(name.length, 20);
      name.copy(go, 24);
      go.writeUInt16BE(0, 24 + name.length);
      socket.write(go);
      let size = -1;
      for (let i = 0; i < 16; i++) {
        const head = await reader.read(20);
        if (head.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new Error('bad option reply magic');
        const type = head.readUInt32BE(12);
        const payload = await reader.read(head.readUInt32BE(16));
        if (type === REP_INFO && payload.readUInt16BE(0) === 0) size = Number(payload.readBigUInt64BE(2));
        else if (type === REP_ACK) break;
        else if (type >= 0x80000000) throw new Error(`GO ${exportName} refused: 0x${type.toString(16)} ${payload.toString('utf8')}`);
      }
      if (size < 0) throw new Error('GO without INFO_EXPORT');
      const pipe = new NbdPipe(socket, size);
      reader.detach();
      const rest = reader.rest();
      if (rest.length > 0) pipe.onData(rest);
      return pipe;
    } catch (err) {
      reader.detach();
      socket.destroy();
      throw err;
    }
  }

  get inFlight(): number {
    return this.pending.size;
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.request(Cmd.READ, 0, offset, length, null, length);
  }

  write(offset: number, data: Buffer, flags = 0): Promise<void> {
    return this.request(Cmd.WRITE, flags, offset, data.length, data, 0).then(() => {});
  }

  flush(): Promise<void> {
    return this.request(Cmd.FLUSH, 0, 0, 0, null, 0).then(() => {});
  }

  trim(offset: number, length: number, flags = 0): Promise<void> {
    return this.request(Cmd.TRIM, flags, offset, length, null, 0).then(() => {});
  }

  zero(offset: number, length: number, flags = 0): Promise<void> {
    return this.request(Cmd.WRITE_ZEROES, flags, offset, length, null, 0).then(() => {});
  }

  /** DISC, then wait (bounded) for the server to close. */
  async disconnect(timeoutMs = 5000): Promise<void> {
    if (this.closed) return;
    const header = requestHeader(Cmd.DISC, 0, 0n, 0, 0);
    this.socket.write(header);
    this.socket.end();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private request(type: number, flags: number, offset: number, length: number, payload: Buffer | null, readLength: number): Promise<Buffer> {
    if (this.closedError) return Promise.reject(this.closedError);
    const cookie = this.nextCookie++;
    const what = `${['READ', 'WRITE', 'DISC', 'FLUSH', 'TRIM', 'CACHE', 'WRITE_ZEROES'][type]} ${offset}+${length}`;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(cookie, { what, readLength, resolve, reject });
      const header = requestHeader(type, flags, cookie, offset, length);
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

  private onData(d: Buffer): void {
    this.inbox.push(d);
    this.have += d.length;
    for (;;) {
      if (this.reading) {
        if (this.have < this.reading.length) return;
        const data = this.take(this.reading.length);
        const p = this.pending.get(this.reading.cookie)!;
        this.pending.delete(this.reading.cookie);
        this.reading = null;
        p.resolve(data);
        continue;
      }
      if (this.have < 16) return;
      const head = this.take(16);
      if (head.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) {
        this.socket.destroy();
        this.failAll(new Error(`bad reply magic ${head.toString('hex')}`));
        return;
      }
      const errno = head.readUInt32BE(4);
      const cookie = head.readBigUInt64BE(8);
      const p = this.pending.get(cookie);
      if (!p) {
        this.socket.destroy();
        this.failAll(new Error(`reply to unknown cookie ${cookie}`));
        return;
      }
      if (errno === 0 && p.readLength > 0) {
        this.reading = { cookie, length: p.readLength };
        continue;
      }
      this.pending.delete(cookie);
      if (errno === 0) p.resolve(Buffer.alloc(0));
      else p.reject(new NbdRequestError(errno, p.what));
    }
  }

  private take(n: number): Buffer {
    const all = this.inbox.length === 1 ? this.inbox[0]! : Buffer.concat(this.inbox);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.inbox = rest.length > 0 ? [rest] : [];
    this.have = rest.length;
    return out;
  }

  private failAll(err: Error): void {
    this.closedError ??= err;
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(err);
  }
}

function requestHeader(type: number, flags: number, cookie: bigint, offset: number, length: number): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(REQUEST_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(cookie, 8);
  h.writeBigUInt64BE(BigInt(offset), 16);
  h.writeUInt32BE(length, 24);
  return h;
}

/** Reads exact byte counts during the handshake, each bounded by the overall deadline. */
class HandshakeReader {
  readonly connected: Promise<void>;
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private failure: Error | null = null;
  private readonly deadline: number;
  private readonly socket: Socket;
  private readonly onData = (d: Buffer): void => {
    this.buf = Buffer.concat([this.buf, d]);
    this.wake?.();
  };
  private readonly onEnd = (): void => {
    this.failure ??= new NbdClosedError('closed during the handshake');
    this.wake?.();
  };

  constructor(socket: Socket, timeoutMs: number) {
    this.socket = socket;
    this.deadline = Date.now() + timeoutMs;
    this.connected = new Promise((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', (err) => {
        this.failure ??= err;
        this.wake?.();
        reject(err);
      });
    });
    this.connected.catch(() => {});
    socket.on('data', this.onData);
    socket.on('close', this.onEnd);
  }

  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.failure) throw this.failure;
      const left = this.deadline - Date.now();
      if (left <= 0) throw new Error('handshake timed out');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  rest(): Buffer {
    return this.buf;
  }

  detach(): void {
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onEnd);
  }
}
