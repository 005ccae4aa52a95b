// Smoke test with a real client: nbdinfo (libnbd, GnuTLS) over nbds+unix:// against `iomapd serve
// --tls require`, once with X.509 and once with a PSK. The full interop suite lives in test/interop.
import { copyFileSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from '../support/daemon.ts';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-fixtures.ts';

let fx: TlsFixtures;
let daemon: Daemon;
let socket: string;

beforeAll(async () => {
  fx = makeTlsFixtures();
  socket = join(fx.dir, 'nbd.sock');
  daemon = await Daemon.start(['--size', '1M', '--socket', socket, '--tls', 'require', '--tls-certificates', fx.certDir, '--tls-psk', fx.pskFile, '--tls-verify-peer']);
});
afterAll(async () => {
  await daemon?.stop();
  fx?.cleanup();
});

function nbdinfo(uri: string): { status: number | null; out: string } {
  const r = spawnSync('nbdinfo', ['--json', uri], { encoding: 'utf8', timeout: 20_000 });
  if (r.error !== undefined) throw r.error; // a missing nbdinfo fails, never skips
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('nbdinfo over TLS', () => {
  it('X.509 with a client certificate (tls-certificates=)', () => {
    const dir = join(fx.dir, 'nbdinfo-client');
    mkdirSync(dir);
    copyFileSync(fx.caCert, join(dir, 'ca-cert.pem'));
    copyFileSync(fx.clients.alice.cert, join(dir, 'client-cert.pem'));
    copyFileSync(fx.clients.alice.key, join(dir, 'client-key.pem'));
    const r = nbdinfo(`nbds+unix:///?socket=${socket}&tls-certificates=${dir}`);
    expect(r.status, r.out).toBe(0);
    expect(JSON.parse(r.out).exports[0]['export-size']).toBe(1 << 20);
  });

  it('PSK (tls-psk-file=; libnbd takes the PSK username from the URI user, bob@)', () => {
    const r = nbdinfo(`nbds+unix://bob@/?socket=${socket}&tls-psk-file=${fx.pskFile}`);
    expect(r.status, r.out).toBe(0);
    expect(JSON.parse(r.out).exports[0]['export-size']).toBe(1 << 20);
  });

  it('a plain client gets nothing', () => {
    const r = nbdinfo(`nbd+unix:///?socket=${socket}`);
    expect(r.status).not.toBe(0);
  });
});
