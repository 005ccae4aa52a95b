// Fresh TLS material for tests, made with GnuTLS's certtool and psktool (Debian gnutls-bin), the
// tools nbdkit and qemu document. ECDSA P-256 keys keep it fast (well under a second in all).
// Made per call in a new temporary directory; a missing certtool or psktool throws (never skips).
//
// Layout of `dir` (the names `--tls-certificates DIR` expects, nbdkit's and qemu's):
//   ca-cert.pem server-cert.pem server-key.pem ca-crl.pem   the server's directory
//   ca-key.pem                                              the CA's key (tests may sign more)
//   clients/NAME-cert.pem clients/NAME-key.pem              client certificates (see TlsFixtures)
//   other-ca-cert.pem                                       a second, untrusted CA
//   keys.psk                                                psktool's `identity:hexkey` lines
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ClientCert {
  readonly cert: string;
  readonly key: string;
  /** The identities the server derives from it (`cn:`, then SANs). */
  readonly identities: readonly string[];
}

export interface PskEntry {
  /** The name in the file (the server's identity for it is `psk:NAME`). */
  readonly name: string;
  readonly identity: string;
  readonly key: Buffer;
}

export interface TlsFixtures {
  readonly dir: string;
  /** The directory to pass as `--tls-certificates` (same as dir). */
  readonly certDir: string;
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly crl: string;
  readonly clients: {
    /** CN alice, SAN email alice@example.com; valid. */
    readonly alice: ClientCert;
    /** CN bob, SAN dns bob.example.com; valid (a second identity for allow-list tests). */
    readonly bob: ClientCert;
    /** CN old; expired in 2020. */
    readonly expired: ClientCert;
    /** CN mallory; revoked in ca-crl.pem. */
    readonly revoked: ClientCert;
    /** CN stranger; signed by another CA the server does not trust. */
    readonly untrusted: ClientCert;
  };
  readonly pskFile: string;
  /** Two identities in pskFile: alice and bob. */
  readonly psk: { readonly alice: PskEntry; readonly bob: PskEntry };
  /** Removes the directory. */
  cleanup(): void;
}

function run(tool: string, args: readonly string[], cwd: string): void {
  const r = spawnSync(tool, args, { cwd, encoding: 'utf8' });
  if (r.error !== undefined) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${tool} not found: install Debian's gnutls-bin (scripts/test does)`);
    throw r.error;
  }
  // Output is key material and a text dump; quote only stderr, which carries no secrets.
  if (r.status !== 0) throw new Error(`${tool} ${args[0]} failed (exit ${r.status}): ${r.stderr.slice(0, 2000)}`);
}

function privateKey(dir: string, file: string): string {
  run('certtool', ['--generate-privkey', '--key-type', 'ecdsa', '--curve', 'secp256r1', '--no-text', '--outfile', file], dir);
  return join(dir, file);
}

function template(dir: string, name: string, lines: readonly string[]): string {
  const path = join(dir, `${name}.tmpl`);
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

function sign(dir: string, ca: { cert: string; key: string }, name: string, keyFile: string, lines: readonly string[]): string {
  const out = join(dir, `${name}-cert.pem`);
  run(
    'certtool',
    ['--generate-certificate', '--no-text', '--load-privkey', keyFile, '--load-ca-certificate', ca.cert, '--load-ca-privkey', ca.key, '--template', template(dir, name, lines), '--outfile', out],
    dir,
  );
  return out;
}

function selfSignedCa(dir: string, prefix: string, cn: string): { cert: string; key: string } {
  const key = privateKey(dir, `${prefix}-key.pem`);
  const cert = join(dir, `${prefix}-cert.pem`);
  const tmpl = template(dir, prefix, [`cn = "${cn}"`, 'ca', 'cert_signing_key', 'crl_signing_key', 'expiration_days = 30']);
  run('certtool', ['--generate-self-signed', '--no-text', '--load-privkey', key, '--template', tmpl, '--outfile', cert], dir);
  return { cert, key };
}

function client(dir: string, ca: { cert: string; key: string }, name: string, lines: readonly string[], identities: readonly string[]): ClientCert {
  const key = privateKey(dir, `${name}-key.pem`);
  const cert = sign(dir, ca, name, key, [...lines, 'tls_www_client', 'signing_key']);
  return { cert, key, identities };
}

function pskEntry(dir: string, file: string, name: string): PskEntry {
  run('psktool', ['-u', name, '-p', file], dir);
  const line = readFileSync(join(dir, file), 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  if (line === undefined) throw new Error(`psktool wrote no line for ${name}`);
  return { name, identity: `psk:${name}`, key: Buffer.from(line.slice(name.length + 1).trim(), 'hex') };
}

export function makeTlsFixtures(): TlsFixtures {
  const dir = mkdtempSync(join(tmpdir(), 'iomapd-tls-'));
  try {
    const ca = selfSignedCa(dir, 'ca', 'iomapd test CA');
    const serverKey = privateKey(dir, 'server-key.pem');
    const serverCert = sign(dir, ca, 'server', serverKey, [
      'cn = "localhost"',
      'dns_name = "localhost"',
      'ip_address = "127.0.0.1"',
      'tls_www_server',
      'signing_key',
      'encryption_key',
      'expiration_days = 30',
    ]);
    const clientsDir = join(dir, 'clients');
    mkdirSync(clientsDir);
    const alice = client(clientsDir, ca, 'alice', ['cn = "alice"', 'email = "alice@example.com"', 'expiration_days = 30'], ['cn:alice', 'email:alice@example.com']);
    const bob = client(clientsDir, ca, 'bob', ['cn = "bob"', 'dns_name = "bob.example.com"', 'expiration_days = 30'], ['cn:bob', 'dns:bob.example.com']);
    const expired = client(
      clientsDir,
      ca,
      'expired',
      ['cn = "old"', 'activation_date = "2019-01-01 00:00:00 UTC"', 'expiration_date = "2020-01-01 00:00:00 UTC"'],
      ['cn:old'],
    );
    const revoked = client(clientsDir, ca, 'revoked', ['cn = "mallory"', 'expiration_days = 30'], ['cn:mallory']);
    const crl = join(dir, 'ca-crl.pem');
    const crlTmpl = template(dir, 'crl', ['crl_next_update = 30', 'crl_number = 1']);
    run(
      'certtool',
      ['--generate-crl', '--no-text', '--load-ca-privkey', ca.key, '--load-ca-certificate', ca.cert, '--load-certificate', revoked.cert, '--template', crlTmpl, '--outfile', crl],
      dir,
    );
    const other = selfSignedCa(dir, 'other-ca', 'some other CA');
    const untrusted = client(clientsDir, other, 'untrusted', ['cn = "stranger"', 'expiration_days = 30'], ['cn:stranger']);
    const psk = { alice: pskEntry(dir, 'keys.psk', 'alice'), bob: pskEntry(dir, 'keys.psk', 'bob') };
    return {
      dir,
      certDir: dir,
      caCert: ca.cert,
      serverCert,
      serverKey,
      crl,
      clients: { alice, bob, expired, revoked, untrusted },
      pskFile: join(dir, 'keys.psk'),
      psk,
      cleanup: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
