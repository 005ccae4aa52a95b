// Hostile NBD clients for the protocol fuzz test (test/crash/fuzz.test.ts) and the soak
// (test/support/soak/fuzz-soak.ts): fast-check arbitraries of bad magics, absurd and truncated
// lengths, unknown options, commands and flags, offsets near 2^64, strings over 4096 bytes,
// payloads cut short and clients that vanish; how a case becomes bytes, how it is played on a
// fresh connection, and how what the server sent back is judged.
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';

export const MiB = 1024 * 1024;
export const VOLUME_BYTES = 4 * MiB;

export const IHAVEOPT = 0x49484156454f5054n;
export const REQUEST_MAGIC = 0x25609513;
export const NBDMAGIC = 0x4e42444d41474943n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

// ---- byte builders ------------------------------------------------------------------------

export const u16 = (n: number): Buffer => Buffer.from([(n >>> 8) & 0xff, n & 0xff]);
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
export const u64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt.asUintN(64, n));
  return b;
};

/** A u32 length that is sometimes honest, sometimes absurd. */
export const lengthArb = fc.oneof(fc.nat(64), fc.constantFrom(0, 4095, 4096, 4097, 65536, 65537, 0x7fffffff, 0xffffffff), fc.nat());
export const textArb = fc.oneof(
  fc.string({ maxLength: 16 }).map((s) => Buffer.from(s, 'utf8')),
  fc.constant(Buffer.from('default')),
  fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), // invalid UTF-8, NULs
  fc.integer({ min: 4090, max: 5000 }).map((n) => Buffer.alloc(n, 0x61)), // around the 4096-byte limit
);

/** Option data shaped like GO/INFO/META_CONTEXT (with inconsistent inner lengths) or raw bytes. */
const optionDataArb = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  fc.tuple(lengthArb, textArb, fc.nat(70000), fc.array(fc.nat(0xffff), { maxLength: 6 })).map(([nameLen, name, count, infos]) =>
    Buffer.concat([u32(nameLen), name, u16(count & 0xffff), ...infos.map(u16)]),
  ),
  fc.tuple(lengthArb, textArb, lengthArb, fc.array(textArb, { maxLength: 3 })).map(([nameLen, name, n, queries]) =>
    Buffer.concat([u32(nameLen), name, u32(n), ...queries.flatMap((q) => [u32(q.length), q])]),
  ),
);

const optionArb = fc.record({
  magic: fc.oneof({ weight: 9, arbitrary: fc.constant(IHAVEOPT) }, { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
  option: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.nat()),
  data: optionDataArb,
  /** Declared length: honest, or something else (shorter data means the stream stops mid-option). */
  declared: fc.option(lengthArb, { freq: 3 }),
});

const offsetArb = fc.oneof(
  fc.nat(VOLUME_BYTES / 512).map((s) => BigInt(s * 512)),
  fc.constantFrom(2n ** 63n, 2n ** 64n - 512n, 2n ** 64n - 1n, 2n ** 53n, BigInt(VOLUME_BYTES), BigInt(VOLUME_BYTES - 512)),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);

const requestArb = fc.record({
  magic: fc.oneof({ weight: 19, arbitrary: fc.constant(REQUEST_MAGIC) }, { weight: 1, arbitrary: fc.nat() }),
  flags: fc.oneof(fc.constantFrom(0, 1, 2, 4, 8, 0x10, 0x20), fc.nat(0xffff)),
  type: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 8 }) }, { weight: 1, arbitrary: fc.nat(0xffff) }),
  offset: offsetArb,
  length: fc.oneof(fc.nat(16).map((n) => n * 512), fc.constantFrom(1, 511, 4096, 65536, 32 * MiB, 64 * MiB + 512), lengthArb),
  /** WRITE payload actually sent, as a share of the declared length (less: cut short). */
  payloadShare: fc.constantFrom(1, 1, 1, 0.5, 0),
});

export type Ending = 'vanish' | 'listen' | 'half-close';
export const endingArb = fc.constantFrom<Ending>('vanish', 'listen', 'listen', 'half-close');

export type OptionSpec = typeof optionArb extends fc.Arbitrary<infer T> ? T : never;
export type RequestSpec = typeof requestArb extends fc.Arbitrary<infer T> ? T : never;
export type Case =
  | { phase: 'handshake'; clientFlags: number; options: OptionSpec[]; cut: number; ending: Ending }
  | { phase: 'transmission'; requests: RequestSpec[]; cut: number; ending: Ending };

export const caseArb: fc.Arbitrary<Case> = fc.oneof(
  fc.record({
    phase: fc.constant('handshake' as const),
    clientFlags: fc.oneof(fc.constantFrom(0, 1, 3), fc.nat()),
    options: fc.array(optionArb, { minLength: 1, maxLength: 4 }),
    cut: fc.double({ min: 0, max: 1, noNaN: true }),
    ending: endingArb,
  }),
  fc.record({
    phase: fc.constant('transmission' as const),
    requests: fc.array(requestArb, { minLength: 1, maxLength: 6 }),
    cut: fc.double({ min: 0, max: 1, noNaN: true }),
    ending: endingArb,
  }),
);

interface Sent {
  bytes: Buffer;
  /** Transmission cases: request cookie -> bytes of data a successful reply carries. */
  cookies: Map<bigint, number>;
  /** Where the valid handshake (transmission cases) ends: replies before it are option replies. */
  negotiated: boolean;
}

export function build(c: Case): Sent {
  const cookies = new Map<bigint, number>();
  if (c.phase === 'handshake') {
    const parts = [u32(c.clientFlags)];
    for (const o of c.options) {
      const declared = o.declared ?? o.data.length;
      parts.push(u64(o.magic), u32(o.option), u32(declared), o.data.subarray(0, Math.min(o.data.length, declared)));
    }
    return { bytes: cut(Buffer.concat(parts), c.cut), cookies, negotiated: false };
  }
  const go = Buffer.concat([u32(7), Buffer.from('default'), u16(0)]);
  const parts = [u32(3), u64(IHAVEOPT), u32(7), u32(go.length), go];
  let cookie = 1000n;
  for (const r of c.requests) {
    cookie++;
    const length = r.length >>> 0;
    parts.push(u32(r.magic), u16(r.flags), u16(r.type), u64(cookie), u64(r.offset), u32(length));
    if (r.type === 1) parts.push(Buffer.alloc(Math.min(Math.floor(length * r.payloadShare), 2 * MiB), 0x5a));
    cookies.set(cookie, r.type === 0 ? length : 0);
  }
  return { bytes: cut(Buffer.concat(parts), 0.6 + 0.4 * c.cut), cookies, negotiated: true };
}

/** Keeps a prefix (cut >= 0.95 keeps everything): a client that stops in the middle. */
function cut(bytes: Buffer, share: number): Buffer {
  return share >= 0.95 ? bytes : bytes.subarray(0, Math.floor(bytes.length * share));
}

/** Sends a case on a fresh connection to socketPath, ends it as told, returns what the server sent (when we listened). */
export async function play(socketPath: string, c: Case): Promise<Buffer | null> {
  const socket: Socket = connect({ path: socketPath });
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  const { bytes } = build(c);
  socket.write(bytes);
  if (c.ending === 'vanish') {
    // Vanish at once, or a moment later with requests possibly in flight.
    if (bytes.length % 2 === 0) await new Promise((r) => setImmediate(r));
    socket.destroy();
    return null;
  }
  if (c.ending === 'half-close') socket.end();
  await Promise.race([closed, new Promise((r) => setTimeout(r, 120))]);
  socket.destroy();
  return Buffer.concat(got);
}

/** Checks that what the server sent is well formed for what was asked; returns a problem or null. */
export function judge(c: Case, reply: Buffer): string | null {
  if (reply.length === 0) return null;
  if (reply.length < 18) return null; // the greeting may be cut by our own close
  if (reply.readBigUInt64BE(0) !== NBDMAGIC || reply.readBigUInt64BE(8) !== IHAVEOPT) return `bad greeting ${reply.subarray(0, 18).toString('hex')}`;
  let at = 18;
  // Option replies (handshake cases, and the GO of transmission cases).
  let acked = false;
  while (at + 20 <= reply.length && !acked) {
    if (reply.readBigUInt64BE(at) !== OPTION_REPLY_MAGIC) {
      // An EXPORT_NAME success reply has no magic: 8 bytes size + 2 flags (NO_ZEROES negotiated or not).
      if (c.phase === 'handshake') return null;
      return `not an option reply at ${at}: ${reply.subarray(at, at + 20).toString('hex')}`;
    }
    const type = reply.readUInt32BE(at + 12);
    const len = reply.readUInt32BE(at + 16);
    at += 20 + len;
    if (c.phase === 'transmission' && type === 1) acked = true;
  }
  if (c.phase === 'handshake' || !acked) return null;
  const { cookies } = build(c);
  const answered = new Set<bigint>();
  while (at + 16 <= reply.length) {
    if (reply.readUInt32BE(at) !== SIMPLE_REPLY_MAGIC) return `not a simple reply at ${at}: ${reply.subarray(at, at + 16).toString('hex')}`;
    const errno = reply.readUInt32BE(at + 4);
    const cookie = reply.readBigUInt64BE(at + 8);
    if (!cookies.has(cookie)) return `reply to a cookie never sent: ${cookie}`;
    if (answered.has(cookie)) return `two replies to cookie ${cookie}`;
    answered.add(cookie);
    at += 16 + (errno === 0 ? cookies.get(cookie)! : 0);
  }
  return null;
}

/** NBD messages a case sends (options or requests, plus the GO of a transmission case). */
export function packetsOf(c: Case): number {
  return c.phase === 'handshake' ? c.options.length : c.requests.length + 1;
}
