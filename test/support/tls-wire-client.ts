// A byte-level NBD client that can do STARTTLS (issue 12), for the TLS negative tests and the TLS
// fuzz: option replies and simple replies read with deadlines from any stream, plain or TLS.
// It builds bytes with test/support/wire.ts (never the server's codec) and checks nothing beyond
// framing; tests assert on what it returns. TLS itself is Node's `tls` client.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { Duplex } from 'node:stream';
import { be16, be32, be64, clientFlags, infoData, isErrorReply, option, OPT, parseOptionReply, REP, request, W, type OptionReply, type RequestFields } from './wire.ts';
import type { Target } from './test-client.ts';

export const DEADLINE_MS = 3000;

/** What a TLS client presents: a certificate (or none), or a PSK identity and key. */
export type TlsClientCreds =
  | { readonly kind: 'x509'; readonly ca: Buffer; readonly cert?: Buffer; readonly key?: Buffer }
  | { readonly kind: 'psk'; readonly identity: string; readonly key: Buffer };

/** Node's client options for `creds`. TLS 1.3 PSK through OpenSSL's callbacks needs a SHA-256 suite. */
export function tlsOptions(creds: TlsClientCreds): ConnectionOptions {
  if (creds.kind === 'x509') return { minVersion: 'TLSv1.3', ca: creds.ca, cert: creds.cert, key: creds.key, servername: 'localhost' };
  return {
    minVersion: 'TLSv1.3',
    ciphers: 'TLS_AES_128_GCM_SHA256:PSK-AES128-GCM-SHA256',
    checkServerIdentity: () => undefined,
    pskCallback: () => ({ identity: creds.identity, psk: creds.key }),
  };
}

/** Reads exact byte counts from a stream, each read bounded by a deadline. */
export class WireStream {
  private readonly inbox: Buffer[] = [];
  private have = 0;
  private ended = false;
  private wake: (() => void) | null = null;
  private readonly onData = (d: Buffer): void => {
    this.inbox.push(d);
    this.have += d.length;
    this.wake?.();
  };
  private readonly onEnd = (): void => {
    this.ended = true;
    this.wake?.();
  };
  readonly closed: Promise<void>;

  readonly stream: Duplex;

  constructor(stream: Duplex) {
    this.stream = stream;
    stream.on('data', this.onData);
    stream.on('error', () => {});
    stream.once('end', this.onEnd);
    stream.once('close', this.onEnd);
    this.closed = new Promise((resolve) => stream.once('close', () => resolve()));
  }

  get isClosed(): boolean {
    return this.ended;
  }

  write(bytes: Buffer): void {
    this.stream.write(bytes);
  }

  /** Stops reading (the stream is handed to TLS); returns any bytes still unread. */
  detach(): Buffer {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onEnd);
    return this.take(this.have);
  }

  read(n: number, timeoutMs = DEADLINE_MS): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for ${n} bytes (have ${this.have})`)), timeoutMs);
      const done = (err?: Error): void => {
        clearTimeout(timer);
        this.wake = null;
        if (err) reject(err);
        else resolve(this.take(n));
      };
      const check = (): void => {
        if (this.have >= n) done();
        else if (this.ended) done(new Error(`connection closed with ${this.have} of ${n} wanted bytes`));
      };
      this.wake = check;
      check();
    });
  }

  /** Resolves with the unread bytes once the peer closes; rejects if it stays open past the deadline. */
  async expectClose(timeoutMs = DEADLINE_MS): Promise<Buffer> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still open after ${timeoutMs} ms`)), timeoutMs)));
    const ended = new Promise<void>((resolve) => {
      if (this.ended) return resolve();
      const prev = this.wake;
      this.wake = () => {
        prev?.();
        if (this.ended) resolve();
      };
    });
    try {
      await Promise.race([ended, timeout]);
    } finally {
      clearTimeout(timer);
      this.wake = null;
    }
    return this.take(this.have);
  }

  async optionReply(timeoutMs = DEADLINE_MS): Promise<OptionReply> {
    const head = await this.read(20, timeoutMs);
    if (be64(head, 0) !== W.OPTION_REPLY_MAGIC) throw new Error(`not an option reply: ${head.toString('hex')}`);
    const payload = await this.read(be32(head, 16), timeoutMs);
    return parseOptionReply(Buffer.concat([head, payload]));
  }

  /** Sends an option; returns its replies up to the final one (ACK or an error). */
  async opt(opt: number, data?: Buffer, timeoutMs = DEADLINE_MS): Promise<OptionReply[]> {
    this.write(option(opt, data));
    const replies: OptionReply[] = [];
    for (;;) {
      const r = await this.optionReply(timeoutMs);
      replies.push(r);
      if (r.type === REP.ACK || isErrorReply(r.type)) return replies;
    }
  }

  /** The final reply type of an option, for tables of expectations. */
  async finalReply(opt: number, data?: Buffer): Promise<number> {
    return (await this.opt(opt, data)).at(-1)!.type;
  }

  /** GO (simple replies: no STRUCTURED_REPLY sent); throws with the reply type on refusal. */
  async go(name: string): Promise<{ size: bigint; flags: number }> {
    const replies = await this.opt(OPT.GO, infoData(name, []));
    const last = replies.at(-1)!;
    if (last.type !== REP.ACK) throw new Error(`GO ${JSON.stringify(name)} refused: 0x${last.type.toString(16)}`);
    const info = replies.find((r) => r.type === REP.INFO && be16(r.payload, 0) === 0)!;
    return { size: be64(info.payload, 2), flags: be16(info.payload, 10) };
  }

  /** One request and its simple reply (with `dataLength` bytes on success). */
  async roundTrip(r: RequestFields, dataLength = 0, payload?: Buffer): Promise<{ error: number; data: Buffer }> {
    this.write(payload ? Buffer.concat([request(r), payload]) : request(r));
    const head = await this.read(16);
    if (be32(head, 0) !== W.SIMPLE_REPLY_MAGIC) throw new Error(`not a simple reply: ${head.toString('hex')}`);
    const error = be32(head, 4);
    return { error, data: error === 0 && dataLength > 0 ? await this.read(dataLength) : Buffer.alloc(0) };
  }

  /** Waits until the peer closes or `ms` pass, then returns every byte still unread. */
  async drain(ms: number): Promise<Buffer> {
    try {
      return await this.expectClose(ms);
    } catch {
      return this.take(this.have);
    }
  }

  destroy(): void {
    this.stream.destroy();
  }

  private take(n: number): Buffer {
    const all = Buffer.concat(this.inbox);
    this.inbox.length = 0;
    if (all.length > n) this.inbox.push(all.subarray(n));
    this.have = all.length - n;
    return all.subarray(0, n);
  }
}

/** Connects, reads the greeting and sends the client flags (fixed newstyle, no zeroes). */
export async function plainHandshake(target: Target): Promise<{ socket: Socket; wire: WireStream }> {
  const socket = 'path' in target ? netConnect({ path: target.path }) : netConnect({ host: target.host, port: target.port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const wire = new WireStream(socket);
  const greeting = await wire.read(18);
  if (be64(greeting, 0) !== W.NBDMAGIC || be64(greeting, 8) !== W.IHAVEOPT) throw new Error(`bad greeting ${greeting.toString('hex')}`);
  wire.write(clientFlags(0x3));
  return { socket, wire };
}

/** Sends STARTTLS on a plain connection; returns the final reply type (ACK: TLS may start). */
export async function startTls(wire: WireStream): Promise<number> {
  return wire.finalReply(OPT.STARTTLS);
}

/** Runs the TLS handshake on `socket` (after the STARTTLS ACK); rejects if the server refuses it. */
export function tlsHandshake(socket: Socket, creds: TlsClientCreds, timeoutMs = DEADLINE_MS): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({ ...tlsOptions(creds), socket });
    const timer = setTimeout(() => {
      tls.destroy();
      reject(new Error(`TLS handshake timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    tls.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(tls);
    });
    tls.once('error', (err) => {
      clearTimeout(timer);
      tls.destroy();
      reject(err);
    });
    tls.once('close', () => {
      clearTimeout(timer);
      reject(new Error('closed during the TLS handshake'));
    });
  });
}

/**
 * TLS over a stream of our own between it and `socket`, so that raw bytes can be slipped in
 * between TLS records (`inject`): writing to a socket that a TLSSocket wraps directly is not safe.
 */
export async function tlsWithInjection(socket: Socket, creds: TlsClientCreds): Promise<{ tls: TLSSocket; inject(bytes: Buffer): void }> {
  const proxy = new Duplex({
    read: () => void socket.resume(),
    write: (chunk: Buffer, _encoding, callback) => void socket.write(chunk, callback),
    final: (callback) => {
      socket.end();
      callback();
    },
    destroy: (err, callback) => {
      socket.destroy();
      callback(err);
    },
  });
  socket.on('data', (d: Buffer) => {
    if (!proxy.push(d)) socket.pause();
  });
  socket.once('end', () => proxy.push(null));
  socket.once('close', () => proxy.destroy());
  socket.on('error', () => {});
  const tls = await tlsHandshake(proxy as unknown as Socket, creds);
  return { tls, inject: (bytes) => void socket.write(bytes) };
}

/** Greeting, STARTTLS, TLS handshake: a WireStream in the option phase over TLS. */
export async function tlsSession(target: Target, creds: TlsClientCreds): Promise<WireStream> {
  const { socket, wire } = await plainHandshake(target);
  const rep = await startTls(wire);
  if (rep !== REP.ACK) throw new Error(`STARTTLS refused: 0x${rep.toString(16)}`);
  const left = wire.detach();
  if (left.length > 0) throw new Error(`${left.length} bytes after the STARTTLS ACK before TLS`);
  return new WireStream(await tlsHandshake(socket, creds));
}
