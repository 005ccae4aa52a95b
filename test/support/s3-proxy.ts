// An HTTP proxy between iomapd and radosgw, on loopback, that can misbehave on command: pass
// traffic, drop connections, delay, answer 503 SlowDown, or pose as a store that ignores
// preconditions (a 412 becomes a 200 with the body's MD5 as ETag, as s3rver answers). Requests are
// forwarded unchanged (the Host header too, so SigV4 signatures still verify at radosgw).
import { createHash } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, createServer, request } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type ProxyMode =
  | { readonly kind: 'pass' }
  | { readonly kind: 'drop' }
  | { readonly kind: 'delay'; readonly ms: number }
  | { readonly kind: 'slowdown' }
  | { readonly kind: 'ignore-preconditions' };

export class S3Proxy {
  mode: ProxyMode = { kind: 'pass' };
  /** Requests seen, and those answered by the proxy's misbehaviour rather than the store. */
  requests = 0;
  faulted = 0;
  readonly url: string;
  private readonly server: ReturnType<typeof createServer>;
  private readonly sockets = new Set<Socket>();
  private readonly target: URL;

  private constructor(server: ReturnType<typeof createServer>, target: URL) {
    this.server = server;
    this.target = target;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Listens on an ephemeral loopback port in front of `targetUrl` (radosgw). */
  static async start(targetUrl: string): Promise<S3Proxy> {
    let proxy: S3Proxy | null = null;
    const server = createServer((req, res) => proxy!.handle(req, res));
    server.on('connection', (s: Socket) => {
      proxy?.sockets.add(s);
      s.on('close', () => proxy?.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new S3Proxy(server, new URL(targetUrl));
    return proxy;
  }

  /** Drops every open connection now (keep-alive ones too). */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  async stop(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests++;
    const mode = this.mode;
    if (mode.kind === 'drop') {
      this.faulted++;
      req.socket.destroy();
      return;
    }
    if (mode.kind === 'slowdown') {
      this.faulted++;
      req.resume();
      req.on('end', () => {
        res.writeHead(503, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>');
      });
      return;
    }
    const forward = () => this.forward(req, res, mode.kind === 'ignore-preconditions');
    if (mode.kind === 'delay') {
      this.faulted++;
      setTimeout(forward, mode.ms);
    } else forward();
  }

  private forward(req: IncomingMessage, res: ServerResponse, ignorePreconditions: boolean): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const out = request(
        { host: this.target.hostname, port: this.target.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          if (ignorePreconditions && up.statusCode === 412 && req.method === 'PUT') {
            this.faulted++;
            up.resume();
            res.writeHead(200, { etag: `"${createHash('md5').update(body).digest('hex')}"`, 'content-length': '0' });
            res.end();
            return;
          }
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      out.on('error', () => res.destroy());
      out.end(body);
    });
  }
}
