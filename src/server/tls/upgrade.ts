// STARTTLS on an accepted connection: after the plain-text ACK, the same socket is wrapped in a
// server-side TLSSocket (Node's own TLS; no TLS code of ours). The client sends nothing after
// STARTTLS until it has the ACK, so every byte from here on is TLS and goes to the TLSSocket,
// which holds what arrives early until it is read.
//
// Who the client is: `psk:NAME` when the PSK callback found its key; otherwise the identities of
// a client certificate the CA verified (identity.ts). --tls-verify-peer refuses an X.509 client
// without one. A PSK client never presents a certificate, so Node's own rejectUnauthorized (which
// would refuse PSK clients too) is off and the check is made here, once the handshake is done.
//
// Node sets `authorized` only on sockets a tls.Server accepted itself; on a socket wrapped in
// place we ask the handle for OpenSSL's verify result the same way Node does (`verifyError()`),
// failing closed where it is missing.
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { TlsSession } from '../negotiation.ts';
import type { Credentials } from './credentials.ts';
import { certificateIdentities, pskIdentity } from './identity.ts';

/** Whether the client's certificate verified against the CA (and CRL); why not if not. */
function verifyResult(socket: TLSSocket): { ok: boolean; why: string } {
  const handle = (socket as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })._handle;
  if (typeof handle?.verifyError !== 'function') return { ok: false, why: 'verification result unavailable' };
  if (socket.getPeerCertificate() === null || Object.keys(socket.getPeerCertificate()).length === 0) return { ok: false, why: 'no certificate presented' };
  const err = handle.verifyError();
  return err === null || err === undefined ? { ok: true, why: '' } : { ok: false, why: err.code ?? err.message };
}

export type TlsOutcome = { readonly ok: true; readonly session: TlsSession } | { readonly ok: false; readonly reason: string };

/** Wraps `plain` and starts the server side of the handshake; `done` is called once. */
export function upgradeToTls(plain: Socket, credentials: Credentials, done: (outcome: TlsOutcome) => void): TLSSocket {
  let pskName: string | null = null;
  let finished = false;
  const finish = (outcome: TlsOutcome): void => {
    if (finished) return;
    finished = true;
    done(outcome);
  };
  const keys = credentials.psk;
  const socket = new TLSSocket(plain, {
    isServer: true,
    secureContext: credentials.secureContext,
    requestCert: credentials.x509,
    rejectUnauthorized: false,
    ...(keys === null
      ? {}
      : {
          pskCallback: (_socket: TLSSocket, identity: string): Buffer | null => {
            const key = keys.get(identity) ?? null;
            if (key !== null) pskName = identity;
            return key;
          },
        }),
  });
  socket.once('secure', () => {
    const cipher = socket.getCipher().name;
    const version = socket.getProtocol() ?? 'unknown';
    if (pskName !== null) {
      finish({ ok: true, session: { identities: [pskIdentity(pskName)], version, cipher } });
      return;
    }
    const verified = credentials.x509 ? verifyResult(socket) : { ok: false, why: 'no CA' };
    if (credentials.verifyPeer && !verified.ok) {
      finish({ ok: false, reason: `client certificate refused: ${verified.why}` });
      return;
    }
    const identities = verified.ok ? certificateIdentities(socket.getPeerCertificate()) : [];
    finish({ ok: true, session: { identities, version, cipher } });
  });
  socket.once('error', (err) => finish({ ok: false, reason: `TLS handshake failed: ${err.message}` }));
  socket.once('close', () => finish({ ok: false, reason: 'client closed during the TLS handshake' }));
  return socket;
}
