// Who a TLS client is, as the allow-lists name it: `psk:NAME` for a PSK client; `cn:NAME` and one
// entry per subject alternative name (`dns:`, `email:`, `uri:`, `ip:`) for a client certificate
// the CA verified. A certificate that did not verify gives no identity.
import type { PeerCertificate } from 'node:tls';

const SAN_KINDS: Readonly<Record<string, string>> = { DNS: 'dns', email: 'email', URI: 'uri', 'IP Address': 'ip' };

export const pskIdentity = (name: string): string => `psk:${name}`;

/**
 * Splits Node's subjectaltname string ("DNS:a, email:b, IP Address:1.2.3.4"). Since Node 17 a
 * value holding a comma or quote is written as a JSON string ("DNS:\"a, b\""), so commas inside
 * quotes do not split.
 */
export function splitSubjectAltName(text: string): Array<{ kind: string; value: string }> {
  const out: Array<{ kind: string; value: string }> = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const kind = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      end++;
      value = JSON.parse(text.slice(colon + 1, end)) as string;
    } else {
      end = text.indexOf(', ', colon);
      if (end < 0) end = text.length;
      value = text.slice(colon + 1, end);
    }
    out.push({ kind, value });
    i = text.startsWith(', ', end) ? end + 2 : end + 1;
  }
  return out;
}

/** The identities of a verified client certificate, CN first. */
export function certificateIdentities(cert: PeerCertificate): string[] {
  const ids: string[] = [];
  const cn = cert.subject?.CN;
  for (const name of Array.isArray(cn) ? cn : cn === undefined ? [] : [cn]) ids.push(`cn:${name}`);
  for (const { kind, value } of splitSubjectAltName(cert.subjectaltname ?? '')) {
    const ours = SAN_KINDS[kind];
    if (ours !== undefined) ids.push(`${ours}:${value}`);
  }
  return ids;
}
