// `iomapd serve` options for TLS and export access (nbdkit's names where nbdkit has them):
// --tls, --tls-certificates, --tls-verify-peer, --tls-psk, --allow, --access.
import { Option, type Command } from 'commander';
import { parseAllowOptions } from '../server/access.ts';
import { TLS_MODES, type TlsMode } from '../server/export-registry.ts';
import type { SecuritySources } from '../server/tls/security.ts';

export interface TlsOptions {
  tls: TlsMode;
  tlsCertificates?: string;
  tlsVerifyPeer: boolean;
  tlsPsk?: string;
  allow: string[];
  access?: string;
}

export function addTlsOptions(command: Command): Command {
  return command
    .addOption(new Option('--tls <MODE>', 'off; on (plain and TLS clients); require (TLS only: before STARTTLS only ABORT is served)').choices(TLS_MODES).default('off'))
    .option('--tls-certificates <DIR>', 'X.509: DIR holds ca-cert.pem, server-cert.pem, server-key.pem and optionally ca-crl.pem')
    .option('--tls-verify-peer', 'X.509 clients must present a certificate signed by ca-cert.pem and not revoked', false)
    .option('--tls-psk <FILE>', "PSK: psktool's file, one IDENTITY:HEXKEY per line")
    .option('--allow <EXPORT=IDENTITY,...>', 'only these TLS identities (psk:, cn:, dns:, email:, uri:, ip:) may open EXPORT (repeatable)', (v: string, prev: string[]) => prev.concat(v), [])
    .option('--access <FILE>', 'allow-lists, one `EXPORT IDENTITY [IDENTITY...]` line each (re-read on SIGHUP and reload)');
}

/** What ServerSecurity.load reads; option errors (a malformed --allow) throw BAD_ARGUMENT here. */
export function securitySourcesFromOptions(o: TlsOptions): SecuritySources {
  return {
    mode: o.tls,
    verifyPeer: o.tlsVerifyPeer,
    allow: parseAllowOptions(o.allow),
    ...(o.tlsCertificates === undefined ? {} : { certDir: o.tlsCertificates }),
    ...(o.tlsPsk === undefined ? {} : { pskFile: o.tlsPsk }),
    ...(o.access === undefined ? {} : { accessFile: o.access }),
  };
}
