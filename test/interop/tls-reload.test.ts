// Rotating TLS material on a running daemon (issue 12), seen from real clients: SIGHUP and
// `iomapd reload IMAGE` (the control channel) re-read the PSK file and the access file; afterwards
// the new key and the new allow-list hold and the old ones are refused, while a connection opened
// before the reload keeps working. A broken PSK file makes `iomapd reload` exit 1 naming the file
// and never the key, and the daemon keeps the old material. No key appears in the daemon's output.
import { randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-fixtures.ts';
import {
  describeRun,
  expectNoSecrets,
  IOMAPD_COMMAND,
  iomapd,
  logLines,
  requireTool,
  run,
  runOk,
  runPython,
  secretsIn,
  tlsUri,
  waitForLog,
  withIomapd,
  withTempDir,
  type ClientCreds,
  type IomapdServer,
  type Transport,
} from './harness.ts';

const MiB = 1024 * 1024;
const RELOADED = 'TLS material and access lists reloaded';

let fx: TlsFixtures;
let fixtureSecrets: string[];
beforeAll(async () => {
  fx = makeTlsFixtures();
  fixtureSecrets = await secretsIn([fx.serverKey, fx.pskFile]);
});
afterAll(() => fx?.cleanup());

const hexKey = (): string => randomBytes(32).toString('hex');
const both = (keys: readonly string[]): string[] => keys.flatMap((k) => [k.toLowerCase(), k.toUpperCase()]);

/** One scratch setup: an image with 16 MiB volumes `vol` (allow-listed) and `open`; the daemon's PSK and access files. */
interface Setup {
  image: string;
  serverPsk: string;
  access: string;
  /** alice's first key and bob's key. */
  k1: string;
  kb: string;
  /** A client PSK file holding `name:key`. */
  client(name: string, key: string): Promise<ClientCreds>;
}

async function setUp(scratch: string): Promise<Setup> {
  const image = join(scratch, 'reload.iomapd');
  await iomapd(['create', image, '--size', '16M', '--capacity', '48M', '--volume', 'vol']);
  await iomapd(['volume', 'create', image, 'open', '--size', '16M']);
  const k1 = hexKey();
  const kb = hexKey();
  const serverPsk = join(scratch, 'server.psk');
  await writeFile(serverPsk, `alice:${k1}\nbob:${kb}\n`, { mode: 0o600 });
  const access = join(scratch, 'access');
  await writeFile(access, 'vol psk:alice\n');
  let n = 0;
  const client = async (name: string, key: string): Promise<ClientCreds> => {
    const file = join(scratch, `client-${name}-${++n}.psk`);
    await writeFile(file, `${name}:${key}\n`, { mode: 0o600 });
    return { kind: 'psk', file, username: name };
  };
  return { image, serverPsk, access, k1, kb, client };
}

function serveArgs(s: Setup): string[] {
  return ['--tls', 'require', '--tls-psk', s.serverPsk, '--access', s.access];
}

async function expectServed(server: IomapdServer, name: string, creds: ClientCreds, what: string): Promise<void> {
  const r = await run('nbdinfo', ['--size', tlsUri(server, name, creds)]);
  expect(r.code, `${what}\n${describeRun(r, server)}`).toBe(0);
  expect(r.stdout.trim(), what).toBe(String(16 * MiB));
}

/** The client does not get `name`: its key fails the handshake, or the allow-list hides the export. */
async function expectRefused(server: IomapdServer, name: string, creds: ClientCreds, what: string): Promise<void> {
  const r = await run('nbdinfo', ['--size', tlsUri(server, name, creds)]);
  expect(r.code, `${what} was let in\n${describeRun(r, server)}`).not.toBe(0);
  expect(r.timedOut, `${what}: hung\n${describeRun(r, server)}`).toBe(false);
  expect(r.stdout.trim(), what).toBe('');
}

/** Runs `reload` and waits until the daemon has logged one more successful reload than before. */
async function reloaded(server: IomapdServer, reload: () => Promise<void>): Promise<void> {
  const before = logLines(server).filter((e) => e.msg === RELOADED).length;
  await reload();
  const deadline = Date.now() + 5_000;
  while (logLines(server).filter((e) => e.msg === RELOADED).length <= before) {
    if (Date.now() > deadline) throw new Error(`no "${RELOADED}" line\n${server.output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * libnbd's Python API as alice (key in `creds`) on `vol`: connects, writes and reads, creates
 * `ready`, waits for `go`, then reads and writes again on the same connection. Prints 'ok'.
 */
function holdConnection(server: IomapdServer, creds: ClientCreds & { kind: 'psk' }, ready: string, go: string): Promise<string> {
  const u = new URL(server.uri);
  const socket = u.searchParams.get('socket');
  const connect = socket !== null ? `h.connect_unix(${JSON.stringify(socket)})` : `h.connect_tcp(${JSON.stringify(u.hostname)}, ${JSON.stringify(u.port)})`;
  const script = `import os, time
import nbd
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_psk_file(${JSON.stringify(creds.file)})
h.set_tls_username(${JSON.stringify(creds.username)})
h.set_export_name('vol')
${connect}
assert h.get_tls_negotiated(), 'TLS not negotiated'
h.pwrite(b'\\xa1' * 65536, 0)
assert h.pread(65536, 0) == b'\\xa1' * 65536
open(${JSON.stringify(ready)}, 'w').close()
deadline = time.time() + 30
while not os.path.exists(${JSON.stringify(go)}):
    assert time.time() < deadline, 'no go file'
    time.sleep(0.02)
assert h.pread(65536, 0) == b'\\xa1' * 65536, 'read after reload differs'
h.pwrite(b'\\xb2' * 65536, 65536, nbd.CMD_FLAG_FUA)
assert h.pread(65536, 65536) == b'\\xb2' * 65536, 'write after reload did not read back'
h.shutdown()
print('ok')
`;
  return runPython(server, script).then((r) => r.stdout.trim());
}

async function waitForFile(path: string, server: IomapdServer): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await stat(path).then(() => true, () => false))) {
    if (Date.now() > deadline) throw new Error(`the held connection never got ready\n${server.output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `iomapd reload IMAGE`, whatever its exit code. */
function reloadCommand(image: string): ReturnType<typeof run> {
  return run(IOMAPD_COMMAND[0]!, [...IOMAPD_COMMAND.slice(1), 'reload', image]);
}

/**
 * The rotation both ways of reloading share: alice's key changes (K1 -> K2) and `vol` moves from
 * alice to bob; a connection alice opened with K1 before the reload reads and writes after it.
 */
async function rotate(transport: Transport, reload: (server: IomapdServer, s: Setup) => Promise<void>): Promise<void> {
  await withTempDir(async (scratch) => {
    const s = await setUp(scratch);
    const k2 = hexKey();
    const alice1 = await s.client('alice', s.k1);
    const alice2 = await s.client('alice', k2);
    const bob = await s.client('bob', s.kb);
    await withIomapd({ transport, file: s.image, extraArgs: serveArgs(s) }, async (server) => {
      await expectServed(server, 'vol', alice1, 'alice (K1) on vol before the reload');
      await expectRefused(server, 'vol', bob, 'bob on vol before the reload');
      await expectRefused(server, 'open', alice2, 'alice with K2 before the reload');

      const ready = join(scratch, 'ready');
      const go = join(scratch, 'go');
      const held = holdConnection(server, alice1 as ClientCreds & { kind: 'psk' }, ready, go);
      held.catch(() => {}); // awaited below; a failure before then must not go unhandled
      await waitForFile(ready, server);

      await writeFile(s.serverPsk, `alice:${k2}\nbob:${s.kb}\n`);
      await writeFile(s.access, 'vol psk:bob\n');
      await reloaded(server, () => reload(server, s));

      await expectServed(server, 'open', alice2, 'alice with the new key K2');
      await expectRefused(server, 'open', alice1, 'alice with the old key K1');
      await expectServed(server, 'vol', bob, 'bob on vol after the access file allows him');
      await expectRefused(server, 'vol', alice2, 'alice on vol after the access file names bob only');

      await writeFile(go, '');
      expect(await held).toBe('ok');
      expectNoSecrets(server.output(), [...fixtureSecrets, ...both([s.k1, k2, s.kb])]);
    });
  });
}

describe('reloading TLS material and access lists on a running daemon', () => {
  it('SIGHUP: the new PSK and access file hold, the old are refused, an open connection keeps working (unix)', async (ctx) => {
    requireTool(ctx, 'nbdinfo', 'python3-nbd');
    await rotate('unix', async (server) => {
      process.kill(server.pid, 'SIGHUP');
    });
  });

  it('`iomapd reload IMAGE`: the same through the control channel, with a one-line result (tcp)', async (ctx) => {
    requireTool(ctx, 'nbdinfo', 'python3-nbd');
    await rotate('tcp', async (server, s) => {
      const r = await reloadCommand(s.image);
      expect(r.code, describeRun(r, server)).toBe(0);
      expect(r.stdout).toBe('reloaded TLS material and access lists (--tls require; 1 export restricted by --allow/--access)\n');
    });
  });

  it('a broken PSK file: `iomapd reload` exits 1 naming the file, not the key; the old material keeps working', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTempDir(async (scratch) => {
      const s = await setUp(scratch);
      const k3 = hexKey();
      const odd = hexKey().slice(1); // 63 hex digits: not a key
      const alice1 = await s.client('alice', s.k1);
      const alice3 = await s.client('alice', k3);
      const secrets = [...fixtureSecrets, ...both([s.k1, s.kb, k3, odd])];
      await withIomapd({ transport: 'unix', file: s.image, extraArgs: serveArgs(s), expectedErrors: /reload failed/ }, async (server) => {
        await expectServed(server, 'vol', alice1, 'alice (K1) before the broken reload');
        const good = await readFile(s.serverPsk, 'utf8');
        await writeFile(s.serverPsk, `alice:${k3}\nbob:${odd}\n`);

        const r = await reloadCommand(s.image);
        expect(r.code, describeRun(r, server)).toBe(1);
        expect(r.stdout).toBe('');
        expect(r.stderr).toBe(`iomapd: BAD_ARGUMENT: ${s.serverPsk} line 2: the key of "bob" is not an even number of hex digits\n`);
        expectNoSecrets(r.stderr, secrets, "`iomapd reload`'s message");

        // The daemon logged why, and kept K1: alice's K1 works, the K3 of the broken file does not.
        const line = await waitForLog(server, (e) => String(e.msg).startsWith('reload failed'));
        expect(JSON.stringify(line)).toContain(s.serverPsk);
        await expectServed(server, 'vol', alice1, 'alice (K1) after the broken reload');
        await expectRefused(server, 'vol', alice3, 'alice with the key of the broken file');

        // Fixed, the next reload takes it.
        await writeFile(s.serverPsk, good);
        await runOk(IOMAPD_COMMAND[0]!, [...IOMAPD_COMMAND.slice(1), 'reload', s.image], { server });
        await expectServed(server, 'vol', alice1, 'alice (K1) after the repaired reload');
        expectNoSecrets(server.output(), secrets);
      });
    });
  });

  it('a daemon with --tls off reloads nothing and says so; without a daemon reload is NOT_RUNNING', async () => {
    await withTempDir(async (scratch) => {
      const image = join(scratch, 'plain.iomapd');
      await iomapd(['create', image, '--size', '16M']);
      const idle = await reloadCommand(image);
      expect(idle.code).toBe(1);
      expect(idle.stderr).toMatch(/^iomapd: NOT_RUNNING: no iomapd daemon is serving /);
      await withIomapd({ transport: 'unix', file: image }, async (server) => {
        const r = await reloadCommand(image);
        expect(r.code, describeRun(r, server)).toBe(0);
        expect(r.stdout).toBe('reloaded: the daemon serves with --tls off, so there was no TLS material or access list to re-read\n');
      });
    });
  });
});
