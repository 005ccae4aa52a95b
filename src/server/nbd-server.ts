// Listeners (TCP and Unix sockets) and the lifetime of every connection they accept. One process
// serves every connection of an export, so all of them share one device and one flush barrier.
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { lstat, unlink } from 'node:fs/promises';
import type { Logger } from '../util/log.ts';
import { Connection } from './connection.ts';
import type { ExportRegistry } from './export-registry.ts';
import { Limits } from './limits.ts';

export interface ListenAddress {
  readonly kind: 'tcp' | 'unix';
  /** `host:port` for TCP (the real port when 0 was asked for), the path for Unix sockets. */
  readonly address: string;
}

export class NbdServer {
  private readonly registry: ExportRegistry;
  private readonly log: Logger;
  private readonly listeners: Server[] = [];
  private readonly connections = new Set<Connection>();
  private nextId = 1;
  private stopping: Promise<void> | null = null;

  constructor(registry: ExportRegistry, log: Logger) {
    this.registry = registry;
    this.log = log;
  }

  /** Serves one already-connected socket (an inherited fd, or a test's socket pair). */
  accept(socket: Socket): Connection {
    const id = this.nextId++;
    const peer = socket.remoteAddress === undefined ? 'unix' : `${socket.remoteAddress}:${socket.remotePort}`;
    const conn = new Connection(id, socket, this.registry, this.log.child({ conn: id, peer }));
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
    if (this.stopping !== null) conn.shutdown();
    return conn;
  }

  async listenTcp(host: string, port: number): Promise<ListenAddress> {
    const server = await this.listen((s) => s.listen({ host, port }));
    const addr = server.address() as AddressInfo;
    const shown = addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
    return { kind: 'tcp', address: shown };
  }

  async listenUnix(path: string): Promise<ListenAddress> {
    await removeStaleSocket(path);
    await this.listen((s) => s.listen({ path }));
    return { kind: 'unix', address: path };
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Stops accepting, lets in-flight requests finish (new ones get ESHUTDOWN), closes every
   * connection, then flushes and closes the devices. Idempotent.
   */
  shutdown(graceMs: number = Limits.shutdownGraceMs): Promise<void> {
    this.stopping ??= this.stop(graceMs);
    return this.stopping;
  }

  private async stop(graceMs: number): Promise<void> {
    const closing = this.listeners.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const conn of this.connections) conn.shutdown();
    const all = Promise.all([...this.connections].map((c) => c.closed));
    const timer = setTimeout(() => {
      this.log.warn({ connections: this.connections.size }, 'shutdown grace period over: closing connections');
      for (const conn of this.connections) conn.destroy();
    }, graceMs);
    await all;
    clearTimeout(timer);
    await Promise.all(closing);
    await this.registry.closeAll();
  }

  private listen(start: (s: Server) => void): Promise<Server> {
    // allowHalfOpen: a client may half-close after DISC and still be owed its replies.
    const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.once('listening', () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.error({ err }, 'listener error'));
        this.listeners.push(server);
        resolve(server);
      });
      start(server);
    });
  }
}

/** A socket file left by a daemon that died is removed; any other file there is an error. */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    const st = await lstat(path);
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
