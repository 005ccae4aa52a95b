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
import { build, caseArb, endingArb, IHAVEOPT, judge, MiB, NBDMAGIC, play, u16, u32, u64, VOLUME_BYTES, type Case, type Ending } from '../support/fuzz/hostile-cases.ts';

const CASES = Number(process.env.IOMAPD_FUZZ_CASES ?? 400);
const SEED = Number(process.env.IOMAPD_FUZZ_SEED ?? 4096);

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
      const reply = await play(socketPath, c);
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
