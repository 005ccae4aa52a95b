// TLS material read from disk: X.509 from a --tls-certificates directory (nbdkit's and qemu's
// file names) and PSKs from a --tls-psk file. Loading is all or nothing: any unreadable or bad
// file throws BAD_ARGUMENT naming the file, never quoting a key, and the caller keeps what it had.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { IomapdError } from '../../util/errors.ts';
import { parsePskFile } from './psk-file.ts';

export interface CredentialSources {
  /** Directory with ca-cert.pem, server-cert.pem, server-key.pem and optionally ca-crl.pem. */
  readonly certDir?: string;
  readonly pskFile?: string;
  /** --tls-verify-peer: an X.509 client must present a certificate the CA signed (and did not revoke). */
  readonly verifyPeer: boolean;
}

export interface Credentials {
  readonly secureContext: SecureContext;
  /** Whether a certificate is served (and client certificates are asked for). */
  readonly x509: boolean;
  readonly verifyPeer: boolean;
  /** PSK identity -> key; null without --tls-psk. */
  readonly psk: ReadonlyMap<string, Buffer> | null;
}

/**
 * TLS 1.2 and up: the NBD spec makes 1.2 the floor, and Debian's nbd-client (the kernel client's
 * userspace half) offers 1.2 only. libnbd and qemu negotiate 1.3.
 */
const MIN_VERSION = 'TLSv1.2';
/**
 * With PSKs: the TLS 1.3 suites an external PSK can use (its hash is SHA-256), TLS 1.2's PSK
 * suites, and TLS 1.2's certificate suites for X.509 clients of the same server.
 */
const PSK_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-PSK-CHACHA20-POLY1305',
  'DHE-PSK-AES128-GCM-SHA256',
  'PSK-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

async function readOptional(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function readRequired(path: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new IomapdError('BAD_ARGUMENT', `${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** OpenSSL's messages name the problem, not the key bytes; keep only the message. */
function badMaterial(what: string, err: unknown): IomapdError {
  return new IomapdError('BAD_ARGUMENT', `${what}: ${(err as Error).message}`);
}

export async function loadCredentials(sources: CredentialSources): Promise<Credentials> {
  if (sources.certDir === undefined && sources.pskFile === undefined) {
    throw new IomapdError('BAD_ARGUMENT', 'TLS needs --tls-certificates DIR or --tls-psk FILE');
  }
  if (sources.verifyPeer && sources.certDir === undefined) throw new IomapdError('BAD_ARGUMENT', '--tls-verify-peer needs --tls-certificates DIR (its ca-cert.pem)');
  let psk: Map<string, Buffer> | null = null;
  if (sources.pskFile !== undefined) {
    const text = (await readRequired(sources.pskFile, '--tls-psk')).toString('utf8');
    psk = parsePskFile(text, sources.pskFile);
  }
  // sessionIdContext: OpenSSL refuses PSKs (TLS 1.3 resumes and external PSKs alike) on a
  // context that asks for client certificates unless it has one (tls.Server sets it for its own).
  const options: Parameters<typeof createSecureContext>[0] = { minVersion: MIN_VERSION, sessionIdContext: 'iomapd' };
  // OpenSSL binds an external PSK to SHA-256 and drops it if the suite it picks hashes with
  // SHA-384 (the handshake then falls back to certificates, which a PSK client lacks): with PSKs,
  // offer only the SHA-256 suites of TLS 1.3 (and TLS 1.2's, PSK and certificate).
  if (psk !== null) options.ciphers = PSK_CIPHERS;
  if (sources.certDir !== undefined) {
    const dir = sources.certDir;
    const flag = '--tls-certificates';
    options.ca = await readRequired(join(dir, 'ca-cert.pem'), flag);
    options.cert = await readRequired(join(dir, 'server-cert.pem'), flag);
    options.key = await readRequired(join(dir, 'server-key.pem'), flag);
    const crl = await readOptional(join(dir, 'ca-crl.pem')).catch((err: Error) => {
      throw badMaterial(`${flag}: cannot read ${join(dir, 'ca-crl.pem')}`, err);
    });
    if (crl !== undefined) options.crl = crl;
  }
  let secureContext: SecureContext;
  try {
    secureContext = createSecureContext(options);
  } catch (err) {
    throw badMaterial(sources.certDir !== undefined ? `--tls-certificates ${sources.certDir}` : 'TLS', err);
  }
  return { secureContext, x509: sources.certDir !== undefined, verifyPeer: sources.verifyPeer, psk };
}
