// "HOST:PORT" as the CLI takes it: "127.0.0.1:10809", "[::1]:10809", "localhost:0", ":10809".
import { IomapdError } from './errors.ts';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function parseHostPort(text: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65535) {
    throw new IomapdError('BAD_ARGUMENT', `"${text}" is not HOST:PORT (e.g. 127.0.0.1:10809 or [::1]:10809)`);
  }
  return { host: m[1] ?? (m[2] === '' ? '127.0.0.1' : m[2]!), port };
}

/** The libnbd-style URI clients can use for an export on this address. */
export function nbdUri(kind: 'tcp' | 'unix', address: string, exportName: string): string {
  const name = encodeURIComponent(exportName);
  if (kind === 'unix') return `nbd+unix:///${name}?socket=${address}`;
  return `nbd://${address}/${name}`;
}
