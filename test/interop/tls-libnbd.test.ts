// libnbd's tools over TLS (issue 12): nbdinfo, the Python bindings nbdsh runs, and nbdcopy, against
// `iomapd serve --tls require` with X.509 (client certificates checked: --tls-verify-peer) and PSK,
// on TCP and on a Unix socket, serving an image volume and a raw file (TLS_VARIANTS).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  MiB,
  TLS_VARIANTS,
  describeRun,
  expectNoSecrets,
  patternBytes,
  requireTool,
  run,
  runOk,
  runPython,
  tlsServeArgs,
  tlsUri,
  waitForLog,
  withIomapd,
  withTempDir,
  x509ClientDir,
  type ClientCreds,
  type TlsVariant,
} from './harness.ts';
import { useTlsFixtures, withTlsServer } from './tls-server.ts';

const suite = useTlsFixtures((fx) => [fx.serverKey, fx.pskFile, fx.clients.alice.key, fx.clients.bob.key]);

const identity = (v: TlsVariant): string => (v.auth === 'psk' ? 'psk:alice' : 'cn:alice');

describe.each(TLS_VARIANTS)('libnbd over TLS: $transport, $auth, $served', (v) => {
  it('nbdinfo sees the export over TLS, and the negotiated line names TLS 1.3 and the identity', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTlsServer(suite(), v, '48M', async (server, creds) => {
      const r = await runOk('nbdinfo', ['--json', '--no-content', tlsUri(server, 'vol', creds)], { server });
      const info = JSON.parse(r.stdout) as { TLS: boolean; exports: Array<{ 'export-name': string; 'export-size': number }> };
      expect(info.TLS).toBe(true);
      expect(info.exports).toHaveLength(1);
      expect(info.exports[0]).toMatchObject({ 'export-name': 'vol', 'export-size': 48 * MiB });
      // nbdinfo ends with INFO and ABORT; GO (what --size does not need) comes from --map.
      await runOk('nbdinfo', ['--map', tlsUri(server, 'vol', creds)], { server });
      const negotiated = await waitForLog(server, (e) => e.msg === 'negotiated');
      const text = JSON.stringify(negotiated);
      expect(text, text).toContain('TLSv1.3');
      expect(text, text).toContain(identity(v));
    });
  });

  it('nbdsh (libnbd Python): read, write, flush, zero, trim and block status over TLS', async (ctx) => {
    requireTool(ctx, 'python3-nbd');
    await withTlsServer(suite(), v, '32M', async (server, creds) => {
      const u = new URL(server.uri);
      const socket = u.searchParams.get('socket');
      const connect = socket !== null ? `h.connect_unix(${JSON.stringify(socket)})` : `h.connect_tcp(${JSON.stringify(u.hostname)}, ${JSON.stringify(u.port)})`;
      const setCreds =
        creds.kind === 'x509'
          ? `h.set_tls_certificates(${JSON.stringify(creds.dir)})`
          : `h.set_tls_psk_file(${JSON.stringify(creds.file)})\nh.set_tls_username(${JSON.stringify(creds.username)})`;
      const r = await runPython(
        server,
        `import nbd
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
${setCreds}
h.set_export_name('vol')
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
${connect}
assert h.get_tls_negotiated(), 'TLS not negotiated'
MiB = 1024 * 1024
assert h.get_size() == 32 * MiB
data = bytes((i * 7 + 3) & 0xff for i in range(MiB))
h.pwrite(data, 4 * MiB)
h.pwrite(b'\\x5a' * 4096, 20 * MiB, nbd.CMD_FLAG_FUA)
h.flush()
assert h.pread(MiB, 4 * MiB) == data, 'read back differs'
assert h.pread(4096, 20 * MiB) == b'\\x5a' * 4096
h.zero(65536, 4 * MiB)
assert h.pread(65536, 4 * MiB) == bytes(65536)
assert h.pread(MiB - 65536, 4 * MiB + 65536) == data[65536:]
h.trim(MiB, 20 * MiB)
h.flush()
assert h.pread(MiB, 20 * MiB) == bytes(MiB), 'trimmed MiB is not zeros'
extents = []
def on_extents(metacontext, offset, entries, err):
    if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
        extents.extend(entries)
    return 0
h.block_status(32 * MiB, 0, on_extents)
assert sum(extents[0::2]) == 32 * MiB, extents
# The written MiB at 4 MiB is data (state 0 somewhere in it).
at, data_seen = 0, False
for length, state in zip(extents[0::2], extents[1::2]):
    if at < 5 * MiB and at + length > 4 * MiB + 65536 and state & 1 == 0:
        data_seen = True
    at += length
assert data_seen, extents
h.shutdown()
print('ok')
`,
      );
      expect(r.stdout.trim()).toBe('ok');
    });
  });

  it('nbdcopy copies a file onto the export and back over TLS, byte for byte', async (ctx) => {
    requireTool(ctx, 'nbdcopy', 'cmp');
    await withTlsServer(suite(), v, '24M', async (server, creds, scratch) => {
      const source = join(scratch, 'source.bin');
      const back = join(scratch, 'back.bin');
      await writeFile(source, patternBytes(24 * MiB, 0x7105));
      await runOk('nbdcopy', ['--flush', source, tlsUri(server, 'vol', creds)], { server });
      await runOk('nbdcopy', [tlsUri(server, 'vol', creds), back], { server });
      await runOk('cmp', [source, back]);
    });
  });
});

describe('one server with both --tls-certificates and --tls-psk', () => {
  it('serves an X.509 client and a PSK client alike', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTempDir(async (scratch) => {
      const x509 = await x509ClientDir(join(scratch, 'alice-x509'), suite().fx.caCert, suite().fx.clients.alice);
      const psk: ClientCreds = { kind: 'psk', file: suite().fx.pskFile, username: 'alice' };
      await withIomapd({ transport: 'unix', exportName: 'vol', size: '16M', extraArgs: tlsServeArgs(suite().fx, 'both') }, async (server) => {
        for (const creds of [x509, psk]) {
          const r = await run('nbdinfo', ['--size', tlsUri(server, 'vol', creds)]);
          expect(r.code, `${creds.kind} client refused\n${describeRun(r, server)}`).toBe(0);
          expect(r.stdout.trim()).toBe(String(16 * MiB));
        }
        expectNoSecrets(server.output(), suite().secrets);
      });
    });
  });
});

describe('--tls on (selective)', () => {
  it('serves a plaintext client and a TLS client on the same socket', async (ctx) => {
    requireTool(ctx, 'nbdinfo');
    await withTempDir(async (scratch) => {
      const x509 = await x509ClientDir(join(scratch, 'alice-x509'), suite().fx.caCert, suite().fx.clients.alice);
      await withIomapd({ transport: 'tcp', exportName: 'vol', size: '16M', extraArgs: tlsServeArgs(suite().fx, 'x509', 'on') }, async (server) => {
        const plain = JSON.parse((await runOk('nbdinfo', ['--json', '--no-content', server.uri], { server })).stdout) as { TLS: boolean };
        expect(plain.TLS).toBe(false);
        const tls = JSON.parse((await runOk('nbdinfo', ['--json', '--no-content', tlsUri(server, 'vol', x509)], { server })).stdout) as { TLS: boolean };
        expect(tls.TLS).toBe(true);
        expectNoSecrets(server.output(), suite().secrets);
      });
    });
  });
});
