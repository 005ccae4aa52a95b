// `serve --metrics HOST:PORT|PATH`: an HTTP listener (TCP, or a Unix socket for a PATH) that
// answers GET /metrics with the Prometheus text format and 404 for any other path.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { removeStaleSocket } from '../server/nbd-server.ts';
import { IomapdError } from '../util/errors.ts';
import { parseHostPort, type HostPort } from '../util/listen-address.ts';
import type { Logger } from '../util/log.ts';

export type MetricsAddress = { readonly kind: 'tcp'; readonly host: string; readonly port: number } | { readonly kind: 'unix'; readonly path: string };

/** A --metrics value: a path (it contains a `/`) is a Unix socket, anything else HOST:PORT. */
export function parseMetricsAddress(text: string): MetricsAddress {
  if (text.includes('/')) return { kind: 'unix', path: text };
  let hp: HostPort;
  try {
    hp = parseHostPort(text);
  } catch {
    throw new IomapdError('BAD_ARGUMENT', `--metrics "${text}" is neither HOST:PORT (e.g. 127.0.0.1:9100) nor a Unix socket path (with a /)`);
  }
  return { kind: 'tcp', host: hp.host, port: hp.port };
}

export class MetricsServer {
  private readonly server: Server;
  /** `host:port` (the real port when 0 was asked for), or the socket path. */
  readonly address: string;

  private constructor(server: Server, address: string) {
    this.server = server;
    this.address = address;
  }

  /** Listens; an address in use or not permitted fails with BAD_ARGUMENT naming it. */
  static async listen(at: MetricsAddress, registry: Registry, log: Logger): Promise<MetricsServer> {
    const server = createServer((req, res) => void answer(req, res, registry, log));
    const shown = at.kind === 'unix' ? at.path : at.host.includes(':') ? `[${at.host}]:${at.port}` : `${at.host}:${at.port}`;
    if (at.kind === 'unix') await removeStaleSocket(at.path).catch((err: Error) => {
      throw new IomapdError('BAD_ARGUMENT', `--metrics ${at.path}: ${err.message}`);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, shown)));
      server.listen(at.kind === 'unix' ? { path: at.path } : { host: at.host, port: at.port }, resolve);
    });
    server.on('error', (err) => log.error({ err }, 'metrics listener error'));
    const addr = server.address();
    const address = typeof addr === 'string' || addr === null ? shown : formatTcp(addr);
    return new MetricsServer(server, address);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function formatTcp(addr: AddressInfo): string {
  return addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
}

function listenError(err: NodeJS.ErrnoException, shown: string): Error {
  const why: Record<string, string> = {
    EADDRINUSE: 'the address is already in use',
    EACCES: 'permission denied',
    EADDRNOTAVAIL: 'no such local address',
    ENOTFOUND: 'the host name does not resolve',
  };
  const reason = why[err.code ?? ''] ?? err.message;
  return new IomapdError('BAD_ARGUMENT', `--metrics ${shown}: cannot listen: ${reason}`, { cause: err });
}

async function answer(req: IncomingMessage, res: ServerResponse, registry: Registry, log: Logger): Promise<void> {
  const path = (req.url ?? '').split('?')[0];
  if (path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: metrics are at /metrics\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
    return;
  }
  try {
    const body = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch (err) {
    log.error({ err }, 'metrics scrape failed');
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('scrape failed\n');
  }
}
