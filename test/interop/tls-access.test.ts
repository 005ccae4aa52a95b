// Who may open which export (issue 12), seen from real clients: --allow and --access name the
// identities an export admits (`cn:`, SAN entries such as `email:`/`dns:`, `psk:`); to anyone else
// the export looks absent (nbdinfo: no such export; --list leaves it out), and the refusal is
// logged at warn with the identity and the peer. A volume marked --require-tls is never served in
// plaintext: with --tls on a plain client is told TLS is required and does not see it listed.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-fixtures.ts';
import { plainHandshake } from '../support/tls-wire-client.ts';
import { infoData, OPT, REP } from '../support/wire.ts';
import {
  describeRun,
  expectNoSecrets,
  iomapd,
  logLines,
  plainUri,
  requireTool,
  run,
  runOk,
  secretsIn,
  tlsServeArgs,
  tlsUri,
  waitForLog,
  withIomapd,
  withTempDir,
  x509ClientDir,
  type ClientCreds,
  type IomapdServer,
  type Transport,
} from './harness.ts';

let fx: TlsFixtures;
let secrets: string[];
beforeAll(async () => {
  fx = makeTlsFixtures();
  secrets = await secretsIn([fx.serverKey, fx.pskFile, fx.clients.alice.key, fx.clients.bob.key]);
});
afterAll(() => fx?.cleanup());

const PINO_WARN = 40;

/** An image with 16 MiB volumes `open`, `team` and `bob-only` (and any made by `more`). */
async function makeImage(dir: string, more: (image: string) => Promise<void> = async () => {}): Promise<string> {
  const image = join(dir, 'access.iomapd');
  await iomapd(['create', image, '--size', '16M', '--capacity', '96M', '--volume', 'open']);
  for (const name of ['team', 'bob-only']) await iomapd(['volume', 'create', image, name, '--size', '16M']);
  await more(image);
  return image;
}

/** Export names nbdinfo --list shows to `creds` (null: a plaintext client). */
async function listed(server: IomapdServer, creds: ClientCreds | null): Promise<string[]> {
  const uri = creds === null ? plainUri(server, '') : tlsUri(server, '', creds);
  const r = await runOk('nbdinfo', ['--list', '--json', uri], { server });
  return (JSON.parse(r.stdout) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']).sort();
}

/** Expects nbdinfo on `name` to fail as it does for an export that does not exist. */
async function expectAbsent(server: IomapdServer, name: string, creds: ClientCreds): Promise<void> {
  const r = await run('nbdinfo', ['--size', tlsUri(server, name, creds)]);
  expect(r.code, describeRun(r, server)).not.toBe(0);
  expect(r.stderr, describeRun(r, server)).toMatch(/No such file or directory|no such export|not found/i);
  expect(r.stderr).not.toMatch(/permission|policy|denied/i);
  const unknown = await run('nbdinfo', ['--size', tlsUri(server, 'never-existed', creds)]);
  expect(r.stderr.replaceAll(name, 'X')).toBe(unknown.stderr.replaceAll('never-existed', 'X'));
}

async function expectServed(server: IomapdServer, name: string, creds: ClientCreds): Promise<void> {
  const r = await runOk('nbdinfo', ['--size', tlsUri(server, name, creds)], { server });
  expect(r.stdout.trim()).toBe(String(16 * 1024 * 1024));
}

/** The warn line for a refused identity: it names the identity and the peer. */
async function expectRefusalLogged(server: IomapdServer, identity: string, exportName: string): Promise<void> {
  const line = await waitForLog(server, (e) => e.level === PINO_WARN && JSON.stringify(e).includes(identity) && JSON.stringify(e).includes(exportName));
  expect(typeof line.peer, JSON.stringify(line)).toBe('string');
  expect(line.peer, JSON.stringify(line)).not.toBe('');
}

describe.each<Transport>(['tcp', 'unix'])('per-identity export access over %s', (transport) => {
  it('--allow with X.509 identities (cn:, email:, dns:); everyone else finds the export absent', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTempDir(async (scratch) => {
      const image = await makeImage(scratch);
      const alice = await x509ClientDir(join(scratch, 'alice'), fx.caCert, fx.clients.alice);
      const bob = await x509ClientDir(join(scratch, 'bob'), fx.caCert, fx.clients.bob);
      const allow = ['--allow', 'team=email:alice@example.com,dns:bob.example.com', '--allow', 'bob-only=cn:bob'];
      await withIomapd({ transport, file: image, extraArgs: [...tlsServeArgs(fx, 'x509'), ...allow] }, async (server) => {
        expect(await listed(server, alice)).toEqual(['open', 'team']);
        expect(await listed(server, bob)).toEqual(['bob-only', 'open', 'team']);
        await expectServed(server, 'team', alice); // by its email SAN
        await expectServed(server, 'team', bob); // by its dns SAN
        await expectServed(server, 'bob-only', bob); // by its CN
        await expectServed(server, 'open', alice);
        await expectAbsent(server, 'bob-only', alice);
        await expectRefusalLogged(server, 'cn:alice', 'bob-only');
        expectNoSecrets(server.output(), secrets);
      });
    });
  });

  it('--access FILE with PSK identities: comments and blank lines skipped, unnamed exports open', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTempDir(async (scratch) => {
      const image = await makeImage(scratch);
      const access = join(scratch, 'access');
      await writeFile(access, '# who may open what\n\nteam psk:alice cn:bob\n   \nbob-only   psk:bob\n');
      const alicePsk: ClientCreds = { kind: 'psk', file: fx.pskFile, username: 'alice' };
      const bobPsk: ClientCreds = { kind: 'psk', file: fx.pskFile, username: 'bob' };
      await withIomapd({ transport, file: image, extraArgs: [...tlsServeArgs(fx, 'psk'), '--access', access] }, async (server) => {
        expect(await listed(server, alicePsk)).toEqual(['open', 'team']);
        expect(await listed(server, bobPsk)).toEqual(['bob-only', 'open']);
        await expectServed(server, 'team', alicePsk);
        await expectServed(server, 'bob-only', bobPsk);
        await expectAbsent(server, 'team', bobPsk);
        await expectRefusalLogged(server, 'psk:bob', 'team');
        expectNoSecrets(server.output(), secrets);
      });
    });
  });
});

describe('volumes that require TLS', () => {
  /** The image above plus `private`, created with --require-tls. */
  const withPrivate = async (image: string): Promise<void> => {
    await iomapd(['volume', 'create', image, 'private', '--size', '16M', '--require-tls']);
  };

  it('--tls on: a plain client is told TLS is required for it and does not see it listed; a TLS client does', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTempDir(async (scratch) => {
      const image = await makeImage(scratch, withPrivate);
      const ls = await iomapd(['volume', 'ls', image]);
      expect(ls.stdout).toMatch(/private.*(tls|TLS)/);
      const alicePsk: ClientCreds = { kind: 'psk', file: fx.pskFile, username: 'alice' };
      await withIomapd({ transport: 'tcp', file: image, extraArgs: tlsServeArgs(fx, 'psk', 'on') }, async (server) => {
        expect(await listed(server, null)).toEqual(['bob-only', 'open', 'team']);
        expect(await listed(server, alicePsk)).toEqual(['bob-only', 'open', 'private', 'team']);
        const plain = await run('nbdinfo', ['--size', plainUri(server, 'private')]);
        expect(plain.code, describeRun(plain, server)).not.toBe(0);
        expect(plain.stderr, describeRun(plain, server)).toMatch(/TLS/);
        const ok = await runOk('nbdinfo', ['--size', plainUri(server, 'open')], { server });
        expect(ok.stdout.trim()).toBe(String(16 * 1024 * 1024));
        await expectServed(server, 'private', alicePsk);

        // On the wire: INFO and GO for it get ERR_TLS_REQD, the others are served.
        const u = new URL(server.uri);
        const { wire } = await plainHandshake({ host: u.hostname, port: Number(u.port) });
        expect(await wire.finalReply(OPT.INFO, infoData('private'))).toBe(REP.ERR_TLS_REQD);
        expect(await wire.finalReply(OPT.GO, infoData('private'))).toBe(REP.ERR_TLS_REQD);
        expect(await wire.finalReply(OPT.INFO, infoData('open'))).toBe(REP.ACK);
        wire.destroy();
        expectNoSecrets(server.output(), secrets);
      });
    });
  });

  it('--tls off: serve leaves it out with one warning naming it', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTempDir(async (scratch) => {
      const image = await makeImage(scratch, withPrivate);
      await withIomapd({ transport: 'unix', file: image }, async (server) => {
        // Counted before any client asks for it: the one warning comes from serve itself.
        const warnings = logLines(server).filter((e) => e.level === PINO_WARN && JSON.stringify(e).includes('private'));
        expect(warnings, server.output()).toHaveLength(1);
        expect(await listed(server, null)).toEqual(['bob-only', 'open', 'team']);
        const r = await run('nbdinfo', ['--size', plainUri(server, 'private')]);
        expect(r.code, describeRun(r, server)).not.toBe(0);
      });
    });
  });
});
