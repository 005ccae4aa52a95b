// Listeners (TCP and Unix sockets) and the lifetime of every connection they accept. One process
// serves every connection of an export, so all of them share one device and one flush barrier.
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { lstat, unlink } from 'node:fs/promises';
import { IomapdError } from '../util/errors.ts';
import { unixSocketPath } from '../util/listen-fds.ts';
import type { Logger } from '../util/log.ts';
import { Connection } from './connection.ts';
import type { Export, ExportRegistry } from './export-registry.ts';
import { Limits, serverLimits, type ServerLimits } from './limits.ts';
import { RequestBudget } from './request-budget.ts';
import { RequestMetricsTable } from './request-metrics.ts';
import type { ServerSecurity } from './tls/security.ts';

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
  readonly limits: ServerLimits;
  /** Requests in flight over every connection (ServerLimits.maxInFlightTotal). */
  readonly budget: RequestBudget;
  /** Connections closed at accept because maxConnections were open. */
  refusedConnections = 0;
  private refusalLog = { at: 0, suppressed: 0 };
  private security: ServerSecurity | null = null;
  /** Per-export request metrics, kept only once someone asked for them (`serve --metrics`). */
  private requestMetrics: RequestMetricsTable | null = null;

  constructor(registry: ExportRegistry, log: Logger, limits: Partial<ServerLimits> = {}) {
    this.registry = registry;
    this.log = log;
    this.limits = serverLimits(limits);
    this.budget = new RequestBudget(this.limits.maxInFlightTotal);
  }

  /** TLS mode, material and allow-lists (before listening); the registry decides access from it. */
  useSecurity(security: ServerSecurity): void {
    this.security = security;
    this.registry.policy = security;
  }

  /** Starts keeping per-export request metrics for connections accepted from now on (before listening). */
  keepRequestMetrics(): RequestMetricsTable {
    this.requestMetrics ??= new RequestMetricsTable();
    return this.requestMetrics;
  }

  /** Serves one already-connected socket (an inherited fd, or a test's socket pair); null if refused. */
  accept(socket: Socket): Connection | null {
    const peer = socket.remoteAddress === undefined ? 'unix' : `${socket.remoteAddress}:${socket.remotePort}`;
    if (this.connections.size >= this.limits.maxConnections) {
      this.refuse(socket, peer);
      return null;
    }
    const id = this.nextId++;
    const conn = new Connection(id, socket, this.registry, this.log.child({ conn: id, peer }), {
      limits: this.limits,
      budget: this.budget,
      credentials: () => this.security?.current.credentials ?? null,
      metrics: this.requestMetrics,
    });
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
    if (this.stopping !== null) conn.shutdown();
    return conn;
  }

  /** Closes a connection over the limit at once; logged at most once a second, with a count. */
  private refuse(socket: Socket, peer: string): void {
    this.refusedConnections++;
    socket.on('error', () => {});
    socket.destroy();
    const now = Date.now();
    if (now - this.refusalLog.at < 1000) {
      this.refusalLog.suppressed++;
      return;
    }
    this.log.warn({ peer, open: this.connections.size, maxConnections: this.limits.maxConnections, suppressed: this.refusalLog.suppressed }, 'connection refused: too many connections');
    this.refusalLog = { at: now, suppressed: 0 };
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

  /**
   * Serves a listening socket someone else bound and passed to us as `fd` (systemd socket
   * activation, util/listen-fds.ts): TCP or Unix, as the socket is. Its Unix socket file is not
   * ours: nothing here removes it.
   */
  async listenFd(fd: number): Promise<ListenAddress> {
    const server = await this.listen((s) => s.listen({ fd })).catch((err: NodeJS.ErrnoException) => {
      throw new IomapdError('BAD_ARGUMENT', `socket activation: fd ${fd} is not a listening socket we can serve (${err.code ?? err.message})`, { cause: err });
    });
    const addr = server.address();
    if (addr !== null && typeof addr === 'object') {
      return { kind: 'tcp', address: addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}` };
    }
    return { kind: 'unix', address: unixSocketPath(fd) ?? `fd:${fd}` };
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Open connections in transmission with `exp` (including ones draining after the client left). */
  connectionsTo(exp: Export): number {
    let n = 0;
    for (const conn of this.connections) if (conn.export === exp) n++;
    return n;
  }

  /** Requests in flight on connections in transmission with the export named `name`. */
  inFlightTo(name: string): number {
    let n = 0;
    for (const conn of this.connections) if (conn.export?.name === name) n += conn.inFlight;
    return n;
  }

  /** Connections in transmission with the export named `name` (whichever Export object they opened). */
  connectionsNamed(name: string): number {
    let n = 0;
    for (const conn of this.connections) if (conn.export?.name === name) n++;
    return n;
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
    // pauseOnConnect: the connection chooses how its socket reads (socket-receive.ts).
    const server = createServer({ noDelay: true, allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
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
export async function removeStaleSocket(path: string): Promise<void> {
  try {
    const st = await lstat(path);
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
