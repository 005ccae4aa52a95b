// What a TLS server refuses (issue 12), through real clients where they can say it (nbdinfo) and
// raw bytes where they cannot (test/support/tls-wire-client.ts): a plaintext client in TLS-only
// mode, STARTTLS twice or with TLS off, garbage where the TLS handshake should be, a client that
// stalls inside it, a wrong PSK, and client certificates --tls-verify-peer must turn away
// (untrusted CA, expired, revoked, none). After every refusal a good client still gets in, and no
// private key or PSK appears in the daemon's output.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-fixtures.ts';
import { plainHandshake, startTls, tlsHandshake, tlsSession, type TlsClientCreds } from '../support/tls-wire-client.ts';
import { CMD, infoData, metaData, OPT, REP } from '../support/wire.ts';
import type { Target } from '../support/test-client.ts';
import {
  MiB,
  describeRun,
  expectNoSecrets,
  plainUri,
  requireTool,
  run,
  runOk,
  secretsIn,
  tlsServeArgs,
  tlsUri,
  withIomapd,
  withTempDir,
  x509ClientDir,
  type ClientCreds,
  type IomapdServer,
  type TlsAuth,
  type Transport,
} from './harness.ts';

let fx: TlsFixtures;
let secrets: string[];
let alice: TlsClientCreds;
beforeAll(async () => {
  fx = makeTlsFixtures();
  const c = fx.clients;
  secrets = await secretsIn([fx.serverKey, fx.pskFile, c.alice.key, c.bob.key, c.expired.key, c.revoked.key, c.untrusted.key]);
  alice = { kind: 'x509', ca: await readFile(fx.caCert), cert: await readFile(c.alice.cert), key: await readFile(c.alice.key) };
});
afterAll(() => fx?.cleanup());

function target(server: IomapdServer): Target {
  const u = new URL(server.uri);
  const socket = u.searchParams.get('socket');
  return socket !== null ? { path: socket } : { host: u.hostname, port: Number(u.port) };
}

/** A TLS-only memory server with export `vol`; checks for leaked secrets when the body is done. */
async function withTlsOnly(transport: Transport, extra: readonly string[], body: (server: IomapdServer) => Promise<void>, auth: TlsAuth = 'x509'): Promise<void> {
  await withIomapd({ transport, exportName: 'vol', size: '16M', extraArgs: [...tlsServeArgs(fx, auth), ...extra] }, async (server) => {
    await body(server);
    expectNoSecrets(server.output(), secrets);
  });
}

/** A well-behaved TLS client: GO, a write and a read back. */
async function goodClientRoundTrip(server: IomapdServer): Promise<void> {
  const wire = await tlsSession(target(server), alice);
  const { size } = await wire.go('vol');
  expect(size).toBe(BigInt(16 * MiB));
  const data = Buffer.alloc(4096, 0x6b);
  expect((await wire.roundTrip({ type: CMD.WRITE, cookie: 1n, offset: 8192n, length: 4096 }, 0, data)).error).toBe(0);
  const back = await wire.roundTrip({ type: CMD.READ, cookie: 2n, offset: 8192n, length: 4096 }, 4096);
  expect(back.error).toBe(0);
  expect(back.data.equals(data)).toBe(true);
  expect((await wire.roundTrip({ type: CMD.FLUSH, cookie: 3n })).error).toBe(0);
  wire.destroy();
}

describe.each<Transport>(['tcp', 'unix'])('TLS-only mode (--tls require) over %s', (transport) => {
  it('a plaintext client is told TLS is required: nbdinfo fails saying so; raw options get ERR_TLS_REQD', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTlsOnly(transport, [], async (server) => {
      const r = await run('nbdinfo', ['--size', plainUri(server, 'vol')]);
      expect(r.code, describeRun(r, server)).not.toBe(0);
      expect(r.timedOut).toBe(false);
      expect(r.stderr, describeRun(r, server)).toMatch(/requires TLS/);

      const { wire } = await plainHandshake(target(server));
      const table: Array<[string, number, Buffer | undefined]> = [
        ['LIST', OPT.LIST, undefined],
        ['INFO', OPT.INFO, infoData('vol')],
        ['GO', OPT.GO, infoData('vol')],
        ['STRUCTURED_REPLY', OPT.STRUCTURED_REPLY, undefined],
        ['LIST_META_CONTEXT', OPT.LIST_META_CONTEXT, metaData('vol', ['base:allocation'])],
        ['unknown option 0x7654321', 0x7654321, undefined],
      ];
      for (const [name, opt, data] of table) {
        expect(await wire.finalReply(opt, data), name).toBe(REP.ERR_TLS_REQD);
      }
      // ABORT is still served: ACK, then the server closes.
      expect(await wire.finalReply(OPT.ABORT)).toBe(REP.ACK);
      await wire.expectClose();

      // EXPORT_NAME cannot carry an error: the connection closes with no reply.
      const second = await plainHandshake(target(server));
      second.wire.write(Buffer.concat([Buffer.from('IHAVEOPT'), Buffer.from([0, 0, 0, OPT.EXPORT_NAME, 0, 0, 0, 3]), Buffer.from('vol')]));
      expect((await second.wire.expectClose()).length).toBe(0);

      await goodClientRoundTrip(server);
    });
  });

  it('a second STARTTLS gets ERR_INVALID and the TLS session goes on', async () => {
    await withTlsOnly(transport, [], async (server) => {
      const wire = await tlsSession(target(server), alice);
      expect(await wire.finalReply(OPT.STARTTLS)).toBe(REP.ERR_INVALID);
      expect((await wire.go('vol')).size).toBe(BigInt(16 * MiB));
      expect((await wire.roundTrip({ type: CMD.FLUSH, cookie: 9n })).error).toBe(0);
      wire.destroy();
    });
  });

  it('garbage right after the STARTTLS ACK closes that connection, and only that one', async () => {
    await withTlsOnly(transport, [], async (server) => {
      for (const garbage of [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0]), Buffer.alloc(64 * 1024, 0xa5)]) {
        const { wire } = await plainHandshake(target(server));
        expect(await startTls(wire)).toBe(REP.ACK);
        wire.write(garbage);
        await wire.expectClose(5_000);
      }
      await goodClientRoundTrip(server);
    });
  });

  it('a client that stalls inside the TLS handshake is closed at the handshake timeout', async () => {
    await withTlsOnly(transport, ['--handshake-timeout', '1'], async (server) => {
      // Silent after the ACK; and half a ClientHello (a record header promising more).
      for (const partial of [Buffer.alloc(0), Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])]) {
        const started = Date.now();
        const { wire } = await plainHandshake(target(server));
        expect(await startTls(wire)).toBe(REP.ACK);
        if (partial.length > 0) wire.write(partial);
        await wire.expectClose(4_000);
        const elapsed = Date.now() - started;
        expect(elapsed, 'closed before the handshake timeout').toBeGreaterThanOrEqual(900);
      }
      await goodClientRoundTrip(server);
    });
  });
});

describe('STARTTLS with --tls off', () => {
  it('gets ERR_UNSUP and the plaintext session goes on', async () => {
    await withIomapd({ transport: 'unix', exportName: 'vol', size: '16M' }, async (server) => {
      const { wire } = await plainHandshake(target(server));
      expect(await startTls(wire)).toBe(REP.ERR_UNSUP);
      expect((await wire.go('vol')).size).toBe(BigInt(16 * MiB));
      wire.destroy();
    });
  });
});

describe('credentials the server turns away (--tls-verify-peer)', () => {
  it('wrong PSK, untrusted, expired, revoked and missing client certificates fail; alice gets in', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTempDir(async (scratch) => {
      const wrongKey = Buffer.alloc(32, 0x42).toString('hex');
      const wrongPsk = join(scratch, 'wrong.psk');
      await writeFile(wrongPsk, `alice:${wrongKey}\n`, { mode: 0o600 });
      const carolPsk = join(scratch, 'carol.psk');
      await writeFile(carolPsk, `carol:${wrongKey}\n`, { mode: 0o600 });
      const c = fx.clients;
      const noCert = join(scratch, 'no-cert');
      await x509ClientDir(noCert, fx.caCert, c.alice);
      await rmClientCert(noCert);
      const cases: Array<{ auth: TlsAuth; refused: Array<[string, ClientCreds]>; good: ClientCreds }> = [
        {
          auth: 'psk',
          refused: [
            ['wrong PSK', { kind: 'psk', file: wrongPsk, username: 'alice' }],
            ['unknown PSK identity', { kind: 'psk', file: carolPsk, username: 'carol' }],
          ],
          good: { kind: 'psk', file: fx.pskFile, username: 'alice' },
        },
        {
          auth: 'x509',
          refused: [
            ['certificate from an untrusted CA', await x509ClientDir(join(scratch, 'untrusted'), fx.caCert, c.untrusted)],
            ['expired certificate', await x509ClientDir(join(scratch, 'expired'), fx.caCert, c.expired)],
            ['revoked certificate', await x509ClientDir(join(scratch, 'revoked'), fx.caCert, c.revoked)],
            ['no client certificate', { kind: 'x509', dir: noCert }],
          ],
          good: await x509ClientDir(join(scratch, 'alice'), fx.caCert, c.alice),
        },
      ];
      for (const transport of ['tcp', 'unix'] as const) {
        for (const { auth, refused, good } of cases) {
          await withTlsOnly(
            transport,
            [],
            async (server) => {
              for (const [what, creds] of refused) {
                const r = await run('nbdinfo', ['--size', tlsUri(server, 'vol', creds)]);
                expect(r.code, `${what} was let in\n${describeRun(r, server)}`).not.toBe(0);
                expect(r.timedOut, `${what}: hung\n${describeRun(r, server)}`).toBe(false);
                expect(r.stdout.trim(), what).toBe('');
              }
              const ok = await runOk('nbdinfo', ['--size', tlsUri(server, 'vol', good)], { server });
              expect(ok.stdout.trim()).toBe(String(16 * MiB));
              expectNoSecrets(server.output(), [wrongKey, wrongKey.toUpperCase()], 'the daemon output (the wrong PSK)');
            },
            auth,
          );
        }
      }
    });
  });

  it('without --tls-verify-peer a client with no certificate is served (the refusals above are verify-peer)', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTempDir(async (scratch) => {
      const noCert = join(scratch, 'no-cert');
      await x509ClientDir(noCert, fx.caCert, fx.clients.alice);
      await rmClientCert(noCert);
      await withIomapd({ transport: 'tcp', exportName: 'vol', size: '16M', extraArgs: tlsServeArgs(fx, 'x509', 'require', false) }, async (server) => {
        const r = await runOk('nbdinfo', ['--size', tlsUri(server, 'vol', { kind: 'x509', dir: noCert })], { server });
        expect(r.stdout.trim()).toBe(String(16 * MiB));
        // A raw TLS client with no certificate gets through the handshake too.
        const { socket, wire } = await plainHandshake(target(server));
        expect(await startTls(wire)).toBe(REP.ACK);
        wire.detach();
        (await tlsHandshake(socket, { kind: 'x509', ca: await readFile(fx.caCert) })).destroy();
      });
    });
  });
});

/** Leaves only ca-cert.pem: a client that trusts the server but has no certificate of its own. */
async function rmClientCert(dir: string): Promise<void> {
  await rm(join(dir, 'client-cert.pem'));
  await rm(join(dir, 'client-key.pem'));
}
