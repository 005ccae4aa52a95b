// STARTTLS over loopback with Node's own TLS client: the modes, the handshake's failures, client
// identities and the allow-lists, and reload. Material comes fresh from certtool and psktool.
import { readFileSync, writeFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import { parseAllowOptions, AccessList } from '../../src/server/access.ts';
import type { TlsMode } from '../../src/server/export-registry.ts';
import { ServerSecurity, type SecuritySources } from '../../src/server/tls/security.ts';
import { silentLogger } from '../../src/util/log.ts';
import { startServer, TRANSPORTS, type TestServer } from '../support/server-fixture.ts';
import type { TestClient } from '../support/test-client.ts';
import { makeTlsFixtures, type ClientCert, type TlsFixtures } from '../support/tls-fixtures.ts';
import { infoData, OPT, REP } from '../support/wire.ts';

let fx: TlsFixtures;
beforeAll(() => {
  fx = makeTlsFixtures();
});
afterAll(() => fx.cleanup());

const SIZE = 1 << 20;

describe.each(TRANSPORTS)('TLS over %s', (transport) => {
  let t: TestServer | undefined;
  let security: ServerSecurity;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  async function serve(mode: TlsMode, more: Partial<SecuritySources> = {}, limits = {}): Promise<TestServer> {
    t = await startServer(
      [
        { name: 'disk', device: new MemoryDevice({ size: SIZE }) },
        { name: 'secret', device: new MemoryDevice({ size: SIZE }) },
      ],
      transport,
      limits,
    );
    security = await ServerSecurity.load({ mode, certDir: fx.certDir, pskFile: fx.pskFile, verifyPeer: false, allow: AccessList.EMPTY, ...more }, silentLogger);
    t.server.useSecurity(security);
    return t;
  }

  const certOptions = (c?: ClientCert): ConnectionOptions => ({
    ca: readFileSync(fx.caCert),
    servername: 'localhost',
    ...(c === undefined ? {} : { cert: readFileSync(c.cert), key: readFileSync(c.key) }),
  });
  const pskOptions = (name: string, key: Buffer): ConnectionOptions => ({
    pskCallback: () => ({ identity: name, psk: key }),
    checkServerIdentity: () => undefined,
    ciphers: 'TLS_AES_128_GCM_SHA256',
  });

  async function starttls(c: TestClient, options: ConnectionOptions): Promise<void> {
    await c.start();
    const r = await c.opt(OPT.STARTTLS);
    expect(r.map((x) => x.type)).toEqual([REP.ACK]);
    await c.startTls(options);
  }

  const list = async (c: TestClient): Promise<string[]> =>
    (await c.opt(OPT.LIST)).filter((r) => r.type === REP.SERVER).map((r) => r.payload.subarray(4, 4 + r.payload.readUInt32BE(0)).toString());

  it('require: before TLS only STARTTLS and ABORT; after it, LIST and GO', async () => {
    const s = await serve('require');
    const c = await s.connect();
    await c.start();
    expect((await c.opt(OPT.LIST))[0]!.type).toBe(REP.ERR_TLS_REQD);
    expect((await c.opt(OPT.GO, infoData('disk')))[0]!.type).toBe(REP.ERR_TLS_REQD);
    expect((await c.opt(OPT.STRUCTURED_REPLY))[0]!.type).toBe(REP.ERR_TLS_REQD);
    expect((await c.opt(OPT.STARTTLS)).map((x) => x.type)).toEqual([REP.ACK]);
    await c.startTls(certOptions(fx.clients.alice));
    expect((await c.opt(OPT.STARTTLS))[0]!.type).toBe(REP.ERR_INVALID);
    expect(await list(c)).toEqual(['disk', 'secret']);
    const go = await c.go('disk');
    expect(go.size).toBe(BigInt(SIZE));
  });

  it('require: EXPORT_NAME before TLS closes the connection', async () => {
    const s = await serve('require');
    const c = await s.connect();
    await c.start();
    c.write(Buffer.concat([Buffer.from('49484156454f5054', 'hex'), Buffer.from([0, 0, 0, 1, 0, 0, 0, 4]), Buffer.from('disk')]));
    expect((await c.expectClose()).length).toBe(0);
  });

  it('on: plain clients are served; a requireTls export is ERR_TLS_REQD and absent from LIST', async () => {
    const s = await serve('on');
    s.server['registry'].remove('secret');
    s.server['registry'].add({ name: 'secret', description: '', device: new MemoryDevice({ size: SIZE }), requireTls: true });
    const c = await s.connect();
    await c.start();
    expect(await list(c)).toEqual(['disk']);
    expect((await c.opt(OPT.INFO, infoData('secret')))[0]!.type).toBe(REP.ERR_TLS_REQD);
    await c.go('disk');
    const d = await s.connect();
    await starttls(d, pskOptions('alice', fx.psk.alice.key));
    expect(await list(d)).toEqual(['disk', 'secret']);
  });

  it('off: STARTTLS is ERR_UNSUP', async () => {
    const s = await serve('off');
    const c = await s.connect();
    await c.start();
    expect((await c.opt(OPT.STARTTLS))[0]!.type).toBe(REP.ERR_UNSUP);
  });

  it('garbage where the ClientHello belongs closes the connection', async () => {
    const s = await serve('require');
    const c = await s.connect();
    await c.start();
    expect((await c.opt(OPT.STARTTLS))[0]!.type).toBe(REP.ACK);
    c.write(Buffer.from('this is not a TLS record at all, not even close'));
    await c.expectClose();
  });

  it('a client stalling inside the TLS handshake is closed at the handshake timeout', async () => {
    const s = await serve('require', {}, { handshakeTimeoutMs: 300 });
    const c = await s.connect();
    await c.start();
    expect((await c.opt(OPT.STARTTLS))[0]!.type).toBe(REP.ACK);
    c.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40])); // a record header promising more
    await c.expectClose(2000);
  });

  const refused = async (mode: Partial<SecuritySources>, options: ConnectionOptions): Promise<void> => {
    const s = await serve('require', mode);
    const c = await s.connect();
    await c.start();
    expect((await c.opt(OPT.STARTTLS))[0]!.type).toBe(REP.ACK);
    // TLS 1.3 checks the client's certificate after the client's Finished: the close may come after.
    await c.startTls(options).catch(() => undefined);
    c.write(Buffer.alloc(0));
    await c.expectClose();
  };

  it('a wrong PSK fails the handshake', async () => {
    await refused({ certDir: undefined }, pskOptions('alice', fx.psk.bob.key));
  });
  it('--tls-verify-peer refuses a client without a certificate', async () => {
    await refused({ verifyPeer: true }, certOptions());
  });
  it('--tls-verify-peer admits a certificate the CA signed, with its identities', async () => {
    const s = await serve('require', { verifyPeer: true, allow: parseAllowOptions(['secret=email:alice@example.com']) });
    const c = await s.connect();
    await starttls(c, certOptions(fx.clients.alice));
    expect(await list(c)).toEqual(['disk', 'secret']);
  });
  it('--tls-verify-peer refuses an untrusted, an expired and a revoked certificate', async () => {
    await refused({ verifyPeer: true }, certOptions(fx.clients.untrusted));
    await t?.stop();
    await refused({ verifyPeer: true }, certOptions(fx.clients.expired));
    await t?.stop();
    await refused({ verifyPeer: true }, certOptions(fx.clients.revoked));
  });

  it('an identity not on the allow-list sees the export as absent; one on it opens it', async () => {
    const s = await serve('require', { allow: parseAllowOptions(['secret=email:alice@example.com,psk:bob']) });
    const bob = await s.connect();
    await starttls(bob, certOptions(fx.clients.bob));
    expect(await list(bob)).toEqual(['disk']);
    expect((await bob.opt(OPT.INFO, infoData('secret')))[0]!.type).toBe(REP.ERR_UNKNOWN);
    const alice = await s.connect();
    await starttls(alice, certOptions(fx.clients.alice));
    expect(await list(alice)).toEqual(['disk', 'secret']);
    await alice.go('secret');
    const pskBob = await s.connect();
    await starttls(pskBob, pskOptions('bob', fx.psk.bob.key));
    await pskBob.go('secret');
  });

  it('reload swaps the access file; a broken file keeps the old lists and reports the error', async () => {
    const file = `${fx.dir}/access-${transport}`;
    writeFileSync(file, '# who may\nsecret psk:alice\n');
    const s = await serve('require', { accessFile: file });
    const before = await s.connect();
    await starttls(before, pskOptions('bob', fx.psk.bob.key));
    expect(await list(before)).toEqual(['disk']);
    writeFileSync(file, 'secret psk:bob\n');
    await security.reload();
    const after = await s.connect();
    await starttls(after, pskOptions('bob', fx.psk.bob.key));
    expect(await list(after)).toEqual(['disk', 'secret']);
    writeFileSync(file, 'secret not-an-identity\n');
    await expect(security.reload()).rejects.toThrow(/BAD_ARGUMENT|not KIND:VALUE/);
    const still = await s.connect();
    await starttls(still, pskOptions('bob', fx.psk.bob.key));
    expect(await list(still)).toEqual(['disk', 'secret']);
  });
});
