// What the TLS interop files share: the fixtures made once per file, alice's credentials of a
// variant's kind, and a TLS-only server for a variant whose output is checked for secrets.
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-fixtures.ts';
import {
  expectNoSecrets,
  secretsIn,
  tlsServeArgs,
  tlsServeOptions,
  withIomapd,
  withTempDir,
  x509ClientDir,
  type ClientCreds,
  type IomapdServer,
  type TlsVariant,
} from './harness.ts';

export interface TlsSuite {
  readonly fx: TlsFixtures;
  /** Key material that must never appear in a daemon's output. */
  readonly secrets: string[];
}

/** Makes the fixtures before the file's tests and removes them after; call at the top level. */
export function useTlsFixtures(keys: (fx: TlsFixtures) => string[]): () => TlsSuite {
  let suite: TlsSuite | null = null;
  beforeAll(async () => {
    const fx = makeTlsFixtures();
    suite = { fx, secrets: await secretsIn(keys(fx)) };
  });
  afterAll(() => suite?.fx.cleanup());
  return () => {
    if (suite === null) throw new Error('TLS fixtures are made in beforeAll');
    return suite;
  };
}

/** alice's credentials of the variant's kind (an X.509 directory is made under `scratch`). */
export async function aliceCreds(fx: TlsFixtures, v: TlsVariant, scratch: string): Promise<ClientCreds> {
  if (v.auth === 'psk') return { kind: 'psk', file: fx.pskFile, username: 'alice' };
  return x509ClientDir(join(scratch, 'alice-x509'), fx.caCert, fx.clients.alice);
}

/** Serves `size` bytes as export `vol` in TLS-only mode, with alice's credentials at hand. */
export async function withTlsServer(
  suite: TlsSuite,
  v: TlsVariant,
  size: string,
  body: (server: IomapdServer, creds: ClientCreds, scratch: string) => Promise<void>,
): Promise<void> {
  await withTempDir(async (scratch) => {
    const creds = await aliceCreds(suite.fx, v, scratch);
    await withIomapd(tlsServeOptions(v, scratch, 'vol', size, tlsServeArgs(suite.fx, v.auth)), async (server) => {
      await body(server, creds, scratch);
      expectNoSecrets(server.output(), suite.secrets);
    });
  });
}
