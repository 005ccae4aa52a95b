// qemu (qemu-img, qemu-io), fio's nbd engine and nbd-client over TLS (issue 12), against
// `iomapd serve --tls require` in the TLS_VARIANTS matrix.
// - qemu takes its credentials as an `--object tls-creds-x509|tls-creds-psk` and the export as
//   `--image-opts driver=nbd,...,tls-creds=tls0`.
// - fio hands its URI to libnbd, which refuses the URI's local-file parameters (tls-certificates,
//   tls-psk-file) for programs that do not allow them, fio among them; so fio gets X.509 from
//   libnbd's default directory ($HOME/.pki/libnbd, /etc/pki/libnbd for root: as root it runs as
//   nobody), and has no way to use PSK.
// - nbd-client negotiates TLS in userspace (GnuTLS) and lists the exports; attaching a device is
//   the kernel rig's part.
import { chmod, chown, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  MiB,
  TLS_VARIANTS,
  describeRun,
  patternBytes,
  qemuTls,
  requireTool,
  run,
  runOk,
  tlsUri,
  x509ClientDir,
  type ClientCreds,
  type IomapdServer,
  type TlsVariant,
} from './harness.ts';
import { expectFioVerified, fioVerifyArgs } from './fio-verify.ts';
import { useTlsFixtures, withTlsServer } from './tls-server.ts';

const NBD_CLIENT = existsSync('/usr/sbin/nbd-client') ? '/usr/sbin/nbd-client' : 'nbd-client';
const NOBODY = 65534;

const suite = useTlsFixtures((fx) => [fx.serverKey, fx.pskFile, fx.clients.alice.key]);

/** Runs qemu-io on the export over TLS; fails on a non-zero exit or any complaint. */
async function qemuIo(server: IomapdServer, creds: ClientCreds, commands: readonly string[]): Promise<string> {
  const { object, imageOpts } = qemuTls(server, 'vol', creds);
  const args = ['--object', object, '--image-opts', imageOpts];
  for (const c of commands) args.push('-c', c);
  const r = await run('qemu-io', args);
  if (r.code !== 0 || r.timedOut || /Pattern verification failed|failed|error|mismatch/i.test(r.stdout + r.stderr)) {
    throw new Error(`qemu-io reported a failure\n${describeRun(r, server)}`);
  }
  return r.stdout;
}

describe.each(TLS_VARIANTS)('qemu over TLS: $transport, $auth, $served', (v) => {
  it('qemu-img info, convert onto the export and back, compare', async (ctx) => {
    requireTool(ctx, 'qemu-img', 'cmp');
    await withTlsServer(suite(), v, '16M', async (server, creds, scratch) => {
      const source = join(scratch, 'source.raw');
      const back = join(scratch, 'back.raw');
      await writeFile(source, patternBytes(16 * MiB, 0x9e3779b9));
      const { object, imageOpts } = qemuTls(server, 'vol', creds);
      const info = await runOk('qemu-img', ['info', '--output=json', '--object', object, '--image-opts', imageOpts], { server });
      expect((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size']).toBe(16 * MiB);
      await runOk('qemu-img', ['convert', '-n', '-W', '-m', '8', '--object', object, '-f', 'raw', '--target-image-opts', source, imageOpts], { server });
      const cmp = await runOk('qemu-img', ['compare', '--object', object, '--image-opts', `driver=file,filename=${source}`, imageOpts], { server });
      expect(cmp.stdout).toContain('Images are identical');
      await runOk('qemu-img', ['convert', '--object', object, '--image-opts', imageOpts, '-O', 'raw', back], { server });
      await runOk('cmp', [source, back]);
    });
  });

  it('qemu-io: pattern writes and reads, write -z, discard, FUA, flush', async (ctx) => {
    requireTool(ctx, 'qemu-io');
    await withTlsServer(suite(), v, '32M', async (server, creds) => {
      const out = await qemuIo(server, creds, [
        'write -P 0xab 0 1M',
        'write -P 0x3c 1M 3M',
        'write -P 0x19 4608 1536', // 512-aligned, not 4096-aligned
        'write -f -P 0x12 8M 64k', // FUA
        'write -z 1M 1M',
        'discard 3M 1M',
        'flush',
        'read -P 0xab 0 4608',
        'read -P 0x19 4608 1536',
        'read -P 0xab 6144 1042432',
        'read -P 0 1M 1M',
        'read -P 0x3c 2M 1M',
        'read -P 0 3M 1M',
        'read -P 0x12 8M 64k',
        'read -P 0 31M 1M',
      ]);
      expect(out.match(/^wrote \d+\/\d+ bytes/gm)).toHaveLength(5);
      expect(out.match(/^read (\d+)\/\1 bytes/gm)).toHaveLength(8);
    });
  });
});

/**
 * fio with libnbd's default certificate directory: $HOME/.pki/libnbd for a user, and for root a
 * system directory the test must not touch, so as root fio runs as nobody with its own HOME.
 */
async function fioAsUser(server: IomapdServer, scratch: string): Promise<{ env: NodeJS.ProcessEnv; prefix: string[]; home: string }> {
  const home = join(scratch, 'fio-home');
  await x509ClientDir(join(home, '.pki', 'libnbd'), suite().fx.caCert, suite().fx.clients.alice);
  if (process.getuid?.() !== 0) return { env: { ...process.env, HOME: home }, prefix: [], home };
  for (const p of [home, join(home, '.pki'), join(home, '.pki', 'libnbd'), ...['ca-cert.pem', 'client-cert.pem', 'client-key.pem'].map((f) => join(home, '.pki', 'libnbd', f))]) {
    await chown(p, NOBODY, NOBODY);
  }
  await chmod(scratch, 0o755);
  const socket = new URL(server.uri).searchParams.get('socket');
  if (socket !== null) {
    await chmod(server.dir, 0o755);
    await chmod(socket, 0o777);
  }
  return { env: { ...process.env, HOME: home }, prefix: ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'], home };
}

describe.each(TLS_VARIANTS.filter((v) => v.auth === 'x509'))('fio nbd engine over TLS: $transport, $served', (v) => {
  it('writes and verifies (crc32c) over nbds:// from two jobs', async (ctx) => {
    requireTool(ctx, 'fio');
    await withTlsServer(suite(), v, '32M', async (server, _creds, scratch) => {
      const { env, prefix, home } = await fioAsUser(server, scratch);
      const output = join(home, 'fio.json');
      const fioArgs = fioVerifyArgs('tls', tlsUri(server, 'vol', null), 8 * MiB, output);
      const [cmd, ...args] = [...prefix, 'fio', ...fioArgs];
      const r = await run(cmd!, args, { cwd: home, env, timeoutMs: 120_000 });
      const failure = `fio failed\n${describeRun(r, server)}`;
      expect(r.code, failure).toBe(0);
      await expectFioVerified(output, 8 * MiB, failure);
    });
  });
});

describe('nbd-client over TLS', () => {
  it('lists the exports with a client certificate (-enable-tls, -certfile, -keyfile, -cacertfile)', async (ctx) => {
    requireTool(ctx, 'nbd-client');
    const v: TlsVariant = { transport: 'tcp', auth: 'x509', served: 'image' };
    await withTlsServer(suite(), v, '16M', async (server) => {
      const { hostname, port } = new URL(server.uri);
      const c = suite().fx.clients.alice;
      const r = await run(NBD_CLIENT, ['-certfile', c.cert, '-keyfile', c.key, '-cacertfile', suite().fx.caCert, '-tlshostname', 'localhost', '-enable-tls', '-l', hostname, port]);
      expect(r.code, describeRun(r, server)).toBe(0);
      expect(r.stdout.split('\n').map((l) => l.trim())).toContain('vol');
    });
  });
});
