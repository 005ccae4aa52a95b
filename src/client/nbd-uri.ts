// NBD URIs as libnbd and qemu write them (doc/uri.md of the NetworkBlockDevice/nbd repository):
//   nbd://HOST[:PORT][/EXPORT]            TCP, port 10809 by default
//   nbd+unix:///[EXPORT]?socket=PATH      a Unix socket
// The export name is the URI path without its first "/", percent-decoded. The TLS forms
// (nbds://, nbds+unix://) are refused: this client speaks no TLS.
import { IomapdError } from '../util/errors.ts';

export type NbdAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly exportName: string }
  | { readonly kind: 'unix'; readonly path: string; readonly exportName: string };

const NBD_PORT = 10809;

/** Whether `text` is meant as an NBD URI (so a bad one is an error, not a file name). */
export function looksLikeNbdUri(text: string): boolean {
  return /^nbds?(\+[a-z]+)?:/i.test(text);
}

export function parseNbdUri(text: string): NbdAddress {
  const bad = (why: string) => new IomapdError('BAD_ARGUMENT', `bad NBD URI ${JSON.stringify(text)}: ${why}`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad('not a URI (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH)');
  }
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  if (scheme === 'nbds' || scheme === 'nbds+unix') {
    throw new IomapdError('NOT_SUPPORTED', `${scheme}:// (TLS) is not supported here; use nbd:// or nbd+unix://`);
  }
  let exportName: string;
  try {
    exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  } catch {
    throw bad('the export name is not valid percent-encoding');
  }
  if (scheme === 'nbd') {
    if (url.hostname === '') throw bad('no host');
    const port = url.port === '' ? NBD_PORT : Number(url.port);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    return { kind: 'tcp', host, port, exportName };
  }
  if (scheme === 'nbd+unix') {
    const path = url.searchParams.get('socket');
    if (!path) throw bad('nbd+unix:// needs ?socket=PATH');
    if (url.hostname !== '') throw bad('nbd+unix:// takes no host (nbd+unix:///EXPORT?socket=PATH)');
    return { kind: 'unix', path, exportName };
  }
  throw bad(`unknown scheme ${scheme}:// (nbd:// or nbd+unix://)`);
}

/** The address as a URI again, for messages. */
export function formatNbdAddress(a: NbdAddress): string {
  const name = encodeURIComponent(a.exportName);
  if (a.kind === 'unix') return `nbd+unix:///${name}?socket=${a.path}`;
  const host = a.host.includes(':') ? `[${a.host}]` : a.host;
  return `nbd://${host}:${a.port}/${name}`;
}
