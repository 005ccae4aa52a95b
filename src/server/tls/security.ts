// The server's TLS mode and its rotating material: credentials and allow-lists, held as one
// snapshot that reload() replaces whole. A connection takes the snapshot current at its STARTTLS
// and keeps it; a reload that fails keeps the old snapshot and reports why.
import { readFile } from 'node:fs/promises';
import type { Logger } from '../../util/log.ts';
import { IomapdError } from '../../util/errors.ts';
import { AccessList, parseAccessFile } from '../access.ts';
import type { ExportPolicy, TlsMode } from '../export-registry.ts';
import { loadCredentials, type CredentialSources, type Credentials } from './credentials.ts';

export interface SecuritySources extends CredentialSources {
  readonly mode: TlsMode;
  /** From --allow (fixed for the daemon's life). */
  readonly allow: AccessList;
  /** --access FILE (re-read on reload). */
  readonly accessFile?: string;
}

export interface SecuritySnapshot {
  /** null with --tls off. */
  readonly credentials: Credentials | null;
  readonly access: AccessList;
}

async function loadAccess(sources: SecuritySources): Promise<AccessList> {
  if (sources.accessFile === undefined) return sources.allow;
  let text: string;
  try {
    text = await readFile(sources.accessFile, 'utf8');
  } catch (err) {
    throw new IomapdError('BAD_ARGUMENT', `--access: cannot read ${sources.accessFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return AccessList.merge(sources.allow, parseAccessFile(text, sources.accessFile));
}

async function loadSnapshot(sources: SecuritySources): Promise<SecuritySnapshot> {
  const credentials = sources.mode === 'off' ? null : await loadCredentials(sources);
  return { credentials, access: await loadAccess(sources) };
}

export class ServerSecurity implements ExportPolicy {
  readonly tlsMode: TlsMode;
  private readonly sources: SecuritySources;
  private snapshot: SecuritySnapshot;
  private readonly log: Logger;

  private constructor(sources: SecuritySources, snapshot: SecuritySnapshot, log: Logger) {
    this.tlsMode = sources.mode;
    this.sources = sources;
    this.snapshot = snapshot;
    this.log = log;
  }

  /** Reads every file once; throws BAD_ARGUMENT (before anything listens) if one is bad. */
  static async load(sources: SecuritySources, log: Logger): Promise<ServerSecurity> {
    if (sources.mode === 'off' && (sources.allow.exports.length > 0 || sources.accessFile !== undefined)) {
      throw new IomapdError('BAD_ARGUMENT', '--allow and --access name TLS identities: they need --tls on or --tls require');
    }
    return new ServerSecurity(sources, await loadSnapshot(sources), log);
  }

  get current(): SecuritySnapshot {
    return this.snapshot;
  }

  access(): AccessList {
    return this.snapshot.access;
  }

  /** Re-reads certificates, CRL, PSK file and access file; on any error keeps the old and throws it. */
  async reload(): Promise<void> {
    try {
      this.snapshot = await loadSnapshot(this.sources);
      this.log.info({ tls: this.tlsMode, accessExports: this.snapshot.access.exports.length }, 'TLS material and access lists reloaded');
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'reload failed: keeping the previous TLS material and access lists');
      throw err;
    }
  }
}
