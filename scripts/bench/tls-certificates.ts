// X.509 material for the TLS rows, made once per bench run with GnuTLS's certtool (Debian
// gnutls-bin, as nbdkit and qemu document): a CA and a server certificate for localhost, in the
// file names nbdkit's and iomapd's --tls-certificates DIR expect. fio's libnbd does not verify
// the server's certificate (servers.ts says why), so clients need none of it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function certtool(args: readonly string[], cwd: string): void {
  const r = spawnSync('certtool', args, { cwd, encoding: 'utf8' });
  if (r.error) throw new Error(`certtool: ${r.error.message} (install Debian's gnutls-bin)`);
  // stdout may hold key material: quote stderr only.
  if (r.status !== 0) throw new Error(`certtool ${args[0]} failed (exit ${r.status}): ${r.stderr.slice(0, 2000)}`);
}

/** Makes DIR with ca-cert.pem, server-cert.pem and server-key.pem (ECDSA P-256, valid 7 days). */
export function makeServerCertificates(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = (file: string) => certtool(['--generate-privkey', '--key-type', 'ecdsa', '--curve', 'secp256r1', '--no-text', '--outfile', file], dir);
  key('ca-key.pem');
  writeFileSync(join(dir, 'ca.tmpl'), 'cn = "iomapd bench CA"\nca\ncert_signing_key\nexpiration_days = 7\n');
  certtool(['--generate-self-signed', '--load-privkey', 'ca-key.pem', '--template', 'ca.tmpl', '--no-text', '--outfile', 'ca-cert.pem'], dir);
  key('server-key.pem');
  writeFileSync(join(dir, 'server.tmpl'), 'cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\nsigning_key\nexpiration_days = 7\n');
  certtool(
    ['--generate-certificate', '--load-privkey', 'server-key.pem', '--load-ca-certificate', 'ca-cert.pem', '--load-ca-privkey', 'ca-key.pem', '--template', 'server.tmpl', '--no-text', '--outfile', 'server-cert.pem'],
    dir,
  );
  return dir;
}
