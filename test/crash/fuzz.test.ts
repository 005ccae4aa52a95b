// Protocol fuzzing over a real socket (issue 7 item 4): fast-check builds hostile byte streams --
// bad magics, absurd and truncated lengths, unknown options, commands and flags, offsets near
// 2^64, strings over 4096 bytes, payloads cut short -- and clients that vanish mid-request. Each
// goes to one child daemon serving an image. After every case: the daemon is alive, a well-behaved
// connection opened at the start still round-trips a write and a read, and a client that stayed to
// listen got only well-formed replies (the greeting, option replies, or simple replies to cookies
// it sent, each once). At the end: RSS bounded, the control channel answers, the image checks clean.
// Fixed seed in CI; IOMAPD_FUZZ_CASES and IOMAPD_FUZZ_SEED for more.
//
// The TLS path (issue 12) runs against a second daemon in TLS-only mode: hostile bytes right after
// the STARTTLS ACK (where only a TLS handshake may come), and the same hostile options and requests
// as above sent inside a TLS session, sometimes followed by a corrupted TLS record. After every
// case a well-behaved TLS connection still round-trips.
import { connect, type Socket } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RemoteAdmin } from '../../src/control/remote-admin.ts';
import { checkImageFile } from '../../src/fs/image-file.ts';
import { Daemon, runCli } from '../support/daemon.ts';
import { TestClient } from '../support/test-client.ts';
import { pattern, sectorValue } from '../support/crash/sector-model.ts';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-fixtures.ts';
import { plainHandshake, startTls, tlsSession, tlsWithInjection, WireStream, type TlsClientCreds } from '../support/tls-wire-client.ts';
import { CMD, REP } from '../support/wire.ts';

const CASES = Number(process.env.IOMAPD_FUZZ_CASES ?? 400);
const SEED = Number(process.env.IOMAPD_FUZZ_SEED ?? 4096);
const MiB = 1024 * 1024;
const VOLUME_BYTES = 4 * MiB;

const IHAVEOPT = 0x49484156454f5054n;
const REQUEST_MAGIC = 0x25609513;
const NBDMAGIC = 0x4e42444d41474943n;
const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
const SIMPLE_REPLY_MAGIC = 0x67446698;

let dir = '';
let image = '';
let socketPath = '';
let daemon: Daemon | null = null;
let steady: TestClient | null = null;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-fuzz-'));
  image = join(dir, 'image.iomapd');
  socketPath = join(dir, 'nbd.sock');
  const created = await runCli(['create', image, '--size', `${VOLUME_BYTES}`, '--capacity', '16M']);
  expect(created.code).toBe(0);
  daemon = await Daemon.start([image, '--socket', socketPath, '--handshake-timeout', '2']);
  steady = await TestClient.open(socketPath, 'default');
});

afterAll(async () => {
  await steady?.close().catch(() => {});
  await daemon?.kill().catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

// ---- byte builders ------------------------------------------------------------------------

const u16 = (n: number): Buffer => Buffer.from([(n >>> 8) & 0xff, n & 0xff]);
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const u64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt.asUintN(64, n));
  return b;
};

/** A u32 length that is sometimes honest, sometimes absurd. */
const lengthArb = fc.oneof(fc.nat(64), fc.constantFrom(0, 4095, 4096, 4097, 65536, 65537, 0x7fffffff, 0xffffffff), fc.nat());
const textArb = fc.oneof(
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

type Ending = 'vanish' | 'listen' | 'half-close';
const endingArb = fc.constantFrom<Ending>('vanish', 'listen', 'listen', 'half-close');

type OptionSpec = typeof optionArb extends fc.Arbitrary<infer T> ? T : never;
type RequestSpec = typeof requestArb extends fc.Arbitrary<infer T> ? T : never;
type Case =
  | { phase: 'handshake'; clientFlags: number; options: OptionSpec[]; cut: number; ending: Ending }
  | { phase: 'transmission'; requests: RequestSpec[]; cut: number; ending: Ending };

const caseArb: fc.Arbitrary<Case> = fc.oneof(
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

function build(c: Case): Sent {
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

/** Sends a case on a fresh connection, ends it as told, returns what the server sent (when we listened). */
async function play(c: Case): Promise<Buffer | null> {
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
function judge(c: Case, reply: Buffer): string | null {
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

let roundTrips = 0;
/** The well-behaved connection: a write and a read back, bounded. */
async function steadyRoundTrip(): Promise<void> {
  roundTrips++;
  const sector = roundTrips % (VOLUME_BYTES / 512);
  const value = 0x10000 + roundTrips;
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('steady connection hung')), 10_000));
  await Promise.race([
    (async () => {
      await steady!.writeAt(sector * 512, pattern(1, sector, value));
      const back = await steady!.readAt(sector * 512, 512);
      if (sectorValue(back, 0, sector) !== value) throw new Error(`steady connection read back ${sectorValue(back, 0, sector)}`);
    })(),
    timeout,
  ]);
}

it(`${CASES} hostile clients: no crash, no hang, other connections unaffected, memory bounded`, async () => {
  const rssStart = await daemon!.rss();
  let rssPeak = rssStart;
  let listened = 0;
  await fc.assert(
    fc.asyncProperty(caseArb, async (c) => {
      const reply = await play(c);
      if (reply !== null) {
        listened++;
        const problem = judge(c, reply);
        if (problem) throw new Error(problem);
      }
      if (!daemon!.alive) throw new Error(`the daemon died:\n${daemon!.output()}`);
      await steadyRoundTrip();
      rssPeak = Math.max(rssPeak, await daemon!.rss());
    }),
    { numRuns: CASES, seed: SEED, endOnFailure: true },
  );
  // Connections of vanished clients go away; whatever they held is released.
  await new Promise((r) => setTimeout(r, 300));
  const rssEnd = await daemon!.rss();
  console.log(`protocol fuzz: ${CASES} cases (seed ${SEED}, ${listened} listened to), daemon RSS start ${mb(rssStart)}, peak ${mb(rssPeak)}, end ${mb(rssEnd)}`);
  expect(daemon!.alive).toBe(true);
  expect(rssPeak).toBeLessThan(rssStart + 256 * MiB);
  expect(rssEnd).toBeLessThan(rssStart + 96 * MiB);
  // The control channel still answers, and the image is intact after a clean stop.
  const admin = await RemoteAdmin.connect(`${image}.ctl`);
  expect((await admin.listVolumes()).map((v) => v.name)).toContain('default');
  await admin.close();
  await steady!.close();
  steady = null;
  expect((await daemon!.stop()).code).toBe(0);
  daemon = null;
  expect((await checkImageFile(image, false)).errors).toEqual([]);
});

const mb = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;

// ---- the TLS path ---------------------------------------------------------------------------

const TLS_CASES = Number(process.env.IOMAPD_FUZZ_TLS_CASES ?? Math.max(20, Math.round(CASES / 4)));
const TLS_RECORD_TYPES = [20, 21, 22, 23]; // change_cipher_spec, alert, handshake, application_data

/** What may follow the STARTTLS ACK: noise, TLS record headers with lying lengths, plaintext NBD. */
const afterAckArb = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  fc
    .tuple(fc.oneof(fc.constantFrom(...TLS_RECORD_TYPES), fc.nat(255)), fc.constantFrom(0x0301, 0x0303, 0x0304, 0xffff), fc.nat(0xffff), fc.uint8Array({ maxLength: 200 }))
    .map(([type, version, length, body]) => Buffer.concat([Buffer.from([type]), u16(version), u16(length), Buffer.from(body)])),
  fc.constant(Buffer.concat([u64(IHAVEOPT), u32(7), u32(13), u32(7), Buffer.from('default'), u16(0)])), // GO in plaintext
);

type TlsCase =
  | { where: 'after-ack'; bytes: Buffer; ending: Ending }
  /** A case from above inside TLS (its client flags dropped: they were sent before STARTTLS). */
  | { where: 'in-session'; inner: Case; corruptRecord: boolean };

const tlsCaseArb: fc.Arbitrary<TlsCase> = fc.oneof(
  fc.record({ where: fc.constant('after-ack' as const), bytes: afterAckArb, ending: endingArb }),
  fc.record({
    where: fc.constant('in-session' as const),
    // Half the cases whole: a stream cut in its first option never reaches the option code.
    inner: fc.tuple(caseArb, fc.boolean()).map(([c, whole]) => (whole ? { ...c, cut: 1 } : c)),
    corruptRecord: fc.constantFrom(false, false, false, true),
  }),
);

let tlsDir = '';
let fx: TlsFixtures | null = null;
let tlsDaemon: Daemon | null = null;
let tlsSocketPath = '';
let creds: TlsClientCreds;

afterAll(async () => {
  await tlsDaemon?.kill().catch(() => {});
  fx?.cleanup();
  if (tlsDir !== '') await rm(tlsDir, { recursive: true, force: true });
});

/** Plays a TLS case on a fresh connection; returns a problem with what the server sent, or null. */
async function playTls(c: TlsCase): Promise<string | null> {
  const { socket, wire } = await plainHandshake({ path: tlsSocketPath });
  const ack = await startTls(wire);
  if (ack !== REP.ACK) return `STARTTLS answered 0x${ack.toString(16)}`;
  if (c.where === 'after-ack') {
    wire.write(c.bytes);
    if (c.ending === 'vanish') {
      socket.destroy();
      return null;
    }
    if (c.ending === 'half-close') socket.end();
    const after = await wire.drain(150);
    socket.destroy();
    // Only TLS may follow the ACK: a handshake record or an alert, never a plaintext option reply.
    if (after.length > 0 && after[0] !== 0x15 && after[0] !== 0x16) return `not TLS after the STARTTLS ACK: ${after.subarray(0, 24).toString('hex')}`;
    return null;
  }
  wire.detach();
  let tls: WireStream;
  let inject: (bytes: Buffer) => void;
  try {
    const session = await tlsWithInjection(socket, creds);
    tls = new WireStream(session.tls);
    inject = session.inject;
  } catch (err) {
    return `a good TLS handshake failed: ${(err as Error).message}`;
  }
  tls.write(build(c.inner).bytes.subarray(4));
  // An application-data record that does not decrypt: the server must drop the connection.
  if (c.corruptRecord) setImmediate(() => inject(Buffer.from([23, 3, 3, 0, 32, ...Buffer.alloc(32, 0xee)])));
  if (c.inner.ending === 'vanish') {
    tls.destroy();
    return null;
  }
  const reply = await tls.drain(150);
  tls.destroy();
  if (reply.length > 0) tlsAnswered++;
  // judge() reads the greeting first: the plaintext one was read above, so give it one.
  const greeting = Buffer.concat([u64(NBDMAGIC), u64(IHAVEOPT), u16(3)]);
  return judge(c.inner, Buffer.concat([greeting, reply]));
}

let tlsSteady: WireStream | null = null;
/** In-session cases the server answered inside TLS (the fuzz reached the option and request code). */
let tlsAnswered = 0;
let tlsTrips = 0;
async function tlsSteadyRoundTrip(): Promise<void> {
  tlsTrips++;
  const sector = tlsTrips % (VOLUME_BYTES / 512);
  const data = pattern(1, sector, 0x20000 + tlsTrips);
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('steady TLS connection hung')), 10_000));
  await Promise.race([
    (async () => {
      const w = await tlsSteady!.roundTrip({ type: CMD.WRITE, cookie: BigInt(2 * tlsTrips), offset: BigInt(sector * 512), length: 512 }, 0, data);
      if (w.error !== 0) throw new Error(`steady TLS write failed: ${w.error}`);
      const r = await tlsSteady!.roundTrip({ type: CMD.READ, cookie: BigInt(2 * tlsTrips + 1), offset: BigInt(sector * 512), length: 512 }, 512);
      if (r.error !== 0 || !r.data.equals(data)) throw new Error('steady TLS connection read back other bytes');
    })(),
    timeout,
  ]);
}

it(`${TLS_CASES} hostile TLS clients: after the STARTTLS ACK and inside TLS; a TLS connection keeps working`, async () => {
  fx = makeTlsFixtures();
  creds = { kind: 'x509', ca: await readFile(fx.caCert) };
  tlsDir = await mkdtemp(join(tmpdir(), 'iomapd-fuzz-tls-'));
  const tlsImage = join(tlsDir, 'image.iomapd');
  tlsSocketPath = join(tlsDir, 'nbd.sock');
  expect((await runCli(['create', tlsImage, '--size', `${VOLUME_BYTES}`, '--capacity', '16M'])).code).toBe(0);
  tlsDaemon = await Daemon.start([tlsImage, '--socket', tlsSocketPath, '--handshake-timeout', '2', '--tls', 'require', '--tls-certificates', fx.certDir]);
  tlsSteady = await tlsSession({ path: tlsSocketPath }, creds);
  await tlsSteady.go('default');
  await fc.assert(
    fc.asyncProperty(tlsCaseArb, async (c) => {
      const problem = await playTls(c);
      if (problem) throw new Error(problem);
      if (!tlsDaemon!.alive) throw new Error(`the daemon died:\n${tlsDaemon!.output()}`);
      await tlsSteadyRoundTrip();
    }),
    { numRuns: TLS_CASES, seed: SEED, endOnFailure: true },
  );
  console.log(`TLS fuzz: ${TLS_CASES} cases (seed ${SEED}), ${tlsAnswered} answered inside TLS`);
  expect(tlsAnswered).toBeGreaterThan(0);
  tlsSteady.destroy();
  expect((await tlsDaemon.stop()).code).toBe(0);
  expect(tlsDaemon.errorLogLines()).toEqual([]);
  tlsDaemon = null;
  expect((await checkImageFile(tlsImage, false)).errors).toEqual([]);
});
