// A small NBD client for `iomapd import` and `iomapd export`: fixed newstyle handshake, structured
// replies, the base:allocation context, then READ, WRITE, WRITE_ZEROES, BLOCK_STATUS and FLUSH with
// several requests in flight (replies matched by cookie, in any order). No TLS, no extended
// headers: what libnbd's nbdcopy needs from a server, and nothing more.
//
// Errors: a refused connection or unknown export is NOT_FOUND; an error reply becomes the registry
// code of its errno (EPERM READ_ONLY, ENOSPC NO_SPACE, EINVAL INVALID_REQUEST, else IO); a broken
// connection fails every request in flight with IO.
import { connect, type Socket } from 'node:net';
import {
  BASE_ALLOCATION,
  ClientFlag,
  Cmd,
  HandshakeFlag,
  Info,
  NbdErr,
  Opt,
  Rep,
  ReplyFlag,
  ReplyType,
  StateFlag,
  TxFlag,
} from '../protocol/constants.ts';
import { ByteQueue } from '../protocol/framer.ts';
import { errName, repName } from '../protocol/names.ts';
import type { Decoded } from '../protocol/result.ts';
import { type ErrorCode, IomapdError } from '../util/errors.ts';
import {
  decodeGreeting,
  decodeOptionReply,
  decodeReplyHeader,
  encodeClientFlags,
  encodeOption,
  encodeRequest,
  goData,
  metaContextData,
  type OptionReply,
} from './client-codec.ts';
import { formatNbdAddress, type NbdAddress } from './nbd-uri.ts';

/** One run of base:allocation. */
export interface AllocationRun {
  readonly length: number;
  readonly hole: boolean;
  readonly zero: boolean;
}

interface Pending {
  readonly what: string;
  /** READ: where the data goes, and the request's offset (chunks carry absolute offsets). */
  readonly into: Buffer | null;
  readonly offset: number;
  readonly runs: AllocationRun[];
  error: number;
  message: string;
  resolve(): void;
  reject(err: Error): void;
}

const HANDSHAKE_TIMEOUT_MS = 30_000;
/** A server that leaves requests unanswered this long is taken for dead. */
const REPLY_TIMEOUT_MS = 120_000;
/** The longest request we send: the spec's 32-bit length, kept block-aligned. */
export const MAX_REQUEST_LENGTH = 0xffff_f000;

function errnoCode(errno: number): ErrorCode {
  if (errno === NbdErr.EPERM) return 'READ_ONLY';
  if (errno === NbdErr.ENOSPC) return 'NO_SPACE';
  if (errno === NbdErr.EINVAL) return 'INVALID_REQUEST';
  return 'IO';
}

export class NbdClient {
  readonly uri: string;
  size = 0;
  transmissionFlags = 0;
  /** The server's block sizes (512 / 4096 / 32 MiB when it sends none). */
  minimum = 1;
  preferred = 4096;
  maximum = 32 * 1024 * 1024;
  private socket: Socket;
  private readonly input = new ByteQueue();
  private readonly pending = new Map<bigint, Pending>();
  private nextCookie = 1n;
  private allocationId: number | null = null;
  private broken: IomapdError | null = null;
  private wake: (() => void) | null = null;
  private transmitting = false;

  private constructor(socket: Socket, uri: string) {
    this.socket = socket;
    this.uri = uri;
    socket.on('data', (chunk: Buffer) => {
      this.input.push(chunk);
      if (this.transmitting) this.pump();
      else this.wake?.();
    });
    const fail = (why: string) => {
      this.broken ??= new IomapdError('IO', `${uri}: ${why}`);
      for (const p of this.pending.values()) p.reject(this.broken);
      this.pending.clear();
      this.wake?.();
    };
    socket.on('error', (err) => fail((err as Error).message));
    socket.on('close', () => fail('the server closed the connection'));
    socket.setTimeout(REPLY_TIMEOUT_MS, () => {
      if (this.pending.size > 0) socket.destroy(new Error(`no reply within ${REPLY_TIMEOUT_MS / 1000} s`));
    });
  }

  static async connect(address: NbdAddress): Promise<NbdClient> {
    const uri = formatNbdAddress(address);
    const socket = address.kind === 'unix' ? connect({ path: address.path }) : connect({ host: address.host, port: address.port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (err: NodeJS.ErrnoException) => {
        const missing = err.code === 'ECONNREFUSED' || err.code === 'ENOENT' || err.code === 'ENOTFOUND';
        reject(new IomapdError(missing ? 'NOT_FOUND' : 'IO', `no NBD server at ${uri} (${err.code ?? err.message})`, { cause: err }));
      });
    });
    socket.setNoDelay(true);
    const client = new NbdClient(socket, uri);
    const timer = setTimeout(() => socket.destroy(new Error(`no handshake within ${HANDSHAKE_TIMEOUT_MS / 1000} s`)), HANDSHAKE_TIMEOUT_MS);
    try {
      await client.handshake(address.exportName);
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  get readOnly(): boolean {
    return (this.transmissionFlags & TxFlag.READ_ONLY) !== 0;
  }

  /** Whether blockStatus reports the server's real allocation (else everything is data). */
  get knowsAllocation(): boolean {
    return this.allocationId !== null;
  }

  // ------------------------------------------------------------------ handshake

  /** Waits for the next decodable structure in the input. */
  private async next<T>(decode: (b: Buffer) => Decoded<T>): Promise<T> {
    for (;;) {
      if (this.broken) throw this.broken;
      const r = decode(this.input.peek(this.input.length));
      if (r.ok) {
        this.input.skip(r.used);
        return r.value;
      }
      if (r.more === undefined) throw new IomapdError('IO', `${this.uri}: ${r.error.message}`);
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }

  private async option(option: number, data?: Buffer): Promise<OptionReply> {
    this.socket.write(encodeOption(option, data));
    return this.next(decodeOptionReply);
  }

  private async handshake(exportName: string): Promise<void> {
    const { handshakeFlags } = await this.next(decodeGreeting);
    if (!(handshakeFlags & HandshakeFlag.FIXED_NEWSTYLE)) throw new IomapdError('NOT_SUPPORTED', `${this.uri} does not speak fixed newstyle NBD`);
    this.socket.write(encodeClientFlags(ClientFlag.C_FIXED_NEWSTYLE | (handshakeFlags & HandshakeFlag.NO_ZEROES ? ClientFlag.C_NO_ZEROES : 0)));

    const structured = (await this.option(Opt.STRUCTURED_REPLY)).type === Rep.ACK;
    if (structured) {
      this.socket.write(encodeOption(Opt.SET_META_CONTEXT, metaContextData(exportName, [BASE_ALLOCATION])));
      for (let r = await this.next(decodeOptionReply); r.type !== Rep.ACK; r = await this.next(decodeOptionReply)) {
        if (r.type >= 0x80000000) break; // no contexts: everything counts as data
        if (r.type === Rep.META_CONTEXT && r.data.length >= 4 && r.data.subarray(4).toString('utf8') === BASE_ALLOCATION) {
          this.allocationId = r.data.readUInt32BE(0);
        }
      }
    }

    this.socket.write(encodeOption(Opt.GO, goData(exportName, [Info.BLOCK_SIZE])));
    let haveExport = false;
    for (;;) {
      const r = await this.next(decodeOptionReply);
      if (r.type === Rep.ACK) break;
      if (r.type === Rep.INFO && r.data.length >= 2) {
        const type = r.data.readUInt16BE(0);
        if (type === Info.EXPORT && r.data.length >= 12) {
          this.size = Number(r.data.readBigUInt64BE(2));
          this.transmissionFlags = r.data.readUInt16BE(10);
          haveExport = true;
        } else if (type === Info.BLOCK_SIZE && r.data.length >= 14) {
          this.minimum = r.data.readUInt32BE(2);
          this.preferred = r.data.readUInt32BE(6);
          this.maximum = r.data.readUInt32BE(10);
        }
        continue;
      }
      if (r.type >= 0x80000000) throw this.optionError(exportName, r);
    }
    if (!haveExport) throw new IomapdError('IO', `${this.uri}: the server finished GO without the export's size`);
    if (!Number.isSafeInteger(this.size)) throw new IomapdError('NOT_SUPPORTED', `${this.uri}: export size ${this.size} is above 2^53`);
    this.transmitting = true;
    this.pump();
  }

  private optionError(exportName: string, r: OptionReply): IomapdError {
    const text = r.data.length > 0 ? `: ${r.data.toString('utf8')}` : '';
    if (r.type === Rep.ERR_UNKNOWN) return new IomapdError('NOT_FOUND', `${this.uri} has no export ${JSON.stringify(exportName)}${text}`);
    if (r.type === Rep.ERR_TLS_REQD) return new IomapdError('NOT_SUPPORTED', `${this.uri} requires TLS, which this client does not speak`);
    return new IomapdError('IO', `${this.uri} refused export ${JSON.stringify(exportName)} with ${repName(r.type)}${text}`);
  }

  // ------------------------------------------------------------------ transmission

  private request(what: string, command: number, flags: number, offset: number, length: number, into: Buffer | null, payload?: Buffer): Promise<AllocationRun[]> {
    if (this.broken) return Promise.reject(this.broken);
    const cookie = this.nextCookie++;
    return new Promise<AllocationRun[]>((resolve, reject) => {
      const runs: AllocationRun[] = [];
      this.pending.set(cookie, { what, into, offset, runs, error: 0, message: '', resolve: () => resolve(runs), reject });
      this.socket.write(encodeRequest(flags, command, cookie, offset, length));
      if (payload) this.socket.write(payload);
    });
  }

  read(into: Buffer, offset: number): Promise<void> {
    return this.request(`READ at ${offset}`, Cmd.READ, 0, offset, into.length, into).then(() => {});
  }

  write(data: Buffer, offset: number): Promise<void> {
    return this.request(`WRITE at ${offset}`, Cmd.WRITE, 0, offset, data.length, null, data).then(() => {});
  }

  /** WRITE_ZEROES; without NO_HOLE, so the server may punch a hole. */
  async zero(offset: number, length: number): Promise<void> {
    if (this.transmissionFlags & TxFlag.SEND_WRITE_ZEROES) {
      await this.request(`WRITE_ZEROES at ${offset}`, Cmd.WRITE_ZEROES, 0, offset, length, null);
      return;
    }
    const zeros = Buffer.alloc(Math.min(length, 4 * 1024 * 1024));
    for (let at = offset; at < offset + length; at += zeros.length) {
      await this.write(zeros.subarray(0, Math.min(zeros.length, offset + length - at)), at);
    }
  }

  /** base:allocation runs from `offset` (at least one); all data when the server offers no context. */
  async blockStatus(offset: number, length: number): Promise<AllocationRun[]> {
    if (this.allocationId === null) return [{ length, hole: false, zero: false }];
    const runs = await this.request(`BLOCK_STATUS at ${offset}`, Cmd.BLOCK_STATUS, 0, offset, Math.min(length, MAX_REQUEST_LENGTH), null);
    if (runs.length === 0) throw new IomapdError('IO', `${this.uri}: BLOCK_STATUS at ${offset} came back without extents`);
    return runs;
  }

  async flush(): Promise<void> {
    if (this.transmissionFlags & TxFlag.SEND_FLUSH) await this.request('FLUSH', Cmd.FLUSH, 0, 0, 0, null);
  }

  /** Sends DISC after the replies in flight and closes the socket. */
  async close(): Promise<void> {
    if (!this.broken && this.socket.writable) this.socket.write(encodeRequest(0, Cmd.DISC, this.nextCookie++, 0, 0));
    this.socket.end();
    this.socket.destroy();
  }

  /** Parses every complete reply or chunk in the input. */
  private pump(): void {
    for (;;) {
      const h = decodeReplyHeader(this.input.peek(20));
      if (!h.ok) {
        if (h.more === undefined) this.socket.destroy(new Error(h.error.message));
        return;
      }
      const head = h.value;
      const p = this.pending.get(head.cookie);
      if (!p) {
        this.socket.destroy(new Error(`a reply for unknown cookie ${head.cookie}`));
        return;
      }
      if (head.kind === 'simple') {
        const dataLength = head.error === 0 && p.into ? p.into.length : 0;
        if (this.input.length < h.used + dataLength) return;
        this.input.skip(h.used);
        if (dataLength > 0) this.input.take(dataLength).copy(p.into!);
        if (head.error !== 0) p.error = head.error;
        this.finish(head.cookie, p);
        continue;
      }
      if (this.input.length < h.used + head.length) return;
      this.input.skip(h.used);
      this.chunk(p, head.type, this.input.take(head.length));
      if (head.flags & ReplyFlag.DONE) this.finish(head.cookie, p);
    }
  }

  private chunk(p: Pending, type: number, body: Buffer): void {
    if (type === ReplyType.OFFSET_DATA && p.into) {
      body.copy(p.into, Number(body.readBigUInt64BE(0)) - p.offset, 8);
    } else if (type === ReplyType.OFFSET_HOLE && p.into) {
      const at = Number(body.readBigUInt64BE(0)) - p.offset;
      p.into.fill(0, at, at + body.readUInt32BE(8));
    } else if (type === ReplyType.BLOCK_STATUS) {
      if (body.readUInt32BE(0) !== this.allocationId) return;
      for (let i = 4; i + 8 <= body.length; i += 8) {
        const flags = body.readUInt32BE(i + 4);
        p.runs.push({ length: body.readUInt32BE(i), hole: (flags & StateFlag.HOLE) !== 0, zero: (flags & StateFlag.ZERO) !== 0 });
      }
    } else if (type === ReplyType.ERROR || type === ReplyType.ERROR_OFFSET) {
      p.error = body.readUInt32BE(0);
      p.message = body.subarray(6, 6 + body.readUInt16BE(4)).toString('utf8');
    }
  }

  private finish(cookie: bigint, p: Pending): void {
    this.pending.delete(cookie);
    if (p.error === 0) p.resolve();
    else p.reject(new IomapdError(errnoCode(p.error), `${this.uri}: ${p.what} failed with ${errName(p.error)}${p.message ? ` (${p.message})` : ''}`));
  }
}
