// The daemon's end of the control channel: a Unix socket next to the image (IMAGE.ctl), owner-only
// (0600), removed on a clean stop. The daemon holds the image lock, so a socket file found there
// at start is a dead daemon's and is replaced. Requests on one connection run in order.
import { createHash } from 'node:crypto';
import { chmod, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import { isObjectImageName, objectImageIdentity } from '../fs/image-name.ts';
import { removeStaleSocket } from '../server/nbd-server.ts';
import { IomapdError } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import type { ImageAdmin } from './admin.ts';
import { call, encodeLine, errorBody, MAX_REQUEST_BYTES, parseRequest, type ControlProgress, type ControlResponse } from './wire.ts';

/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;
/** Local, owner-only clients; a handful is plenty, and the bound keeps a stuck script harmless. */
const MAX_CONNECTIONS = 16;
/** The most often a long op (backup) sends a progress line. */
const PROGRESS_INTERVAL_MS = 100;
/** A connection with no request for this long is closed. */
const IDLE_TIMEOUT_MS = 5 * 60_000;

/**
 * Next to a file image (IMAGE.ctl). A bucket image has no local file to sit next to: its socket is
 * in IOMAPD_RUN_DIR (else the temp dir), named by a hash of its URL and endpoint.
 */
export function controlPath(image: string, env: NodeJS.ProcessEnv = process.env): string {
  if (!isObjectImageName(image)) return `${image}.ctl`;
  const id = createHash('sha256').update(objectImageIdentity(image, env)).digest('hex').slice(0, 16);
  return join(resolve(env.IOMAPD_RUN_DIR || tmpdir()), `iomapd-s3-${id}.ctl`);
}

export class ControlServer {
  readonly path: string;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private closing: Promise<void> | null = null;

  private constructor(path: string, server: Server) {
    this.path = path;
    this.server = server;
  }

  static async listen(path: string, admin: ImageAdmin, log: Logger): Promise<ControlServer> {
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
      throw new IomapdError('BAD_ARGUMENT', `control socket path is longer than ${MAX_SOCKET_PATH} bytes: ${path}`);
    }
    await removeStaleSocket(path);
    const server = createServer({ allowHalfOpen: false });
    server.maxConnections = MAX_CONNECTIONS;
    const control = new ControlServer(path, server);
    server.on('connection', (socket) => control.serve(socket, admin, log));
    // The socket file is created by bind inside listen(): the umask makes it 0600 from the start
    // (worker threads cannot change the umask; the chmod below still closes the gap there).
    const umask = setUmask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ path }, () => {
          server.off('error', reject);
          server.on('error', (err) => log.error({ err }, 'control listener error'));
          resolve();
        });
      });
    } finally {
      if (umask !== null) process.umask(umask);
    }
    await chmod(path, 0o600);
    return control;
  }

  /** Stops listening, closes every control connection and removes the socket file. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const s of this.sockets) s.destroy();
      await closed;
      await unlink(this.path).catch(() => {});
    })();
    return this.closing;
  }

  private serve(socket: Socket, admin: ImageAdmin, log: Logger): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', (err) => log.debug({ err: err.message }, 'control socket error'));
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
    socket.setEncoding('utf8');
    let pending = '';
    let refused = false;
    let chain: Promise<void> = Promise.resolve();
    const reply = (r: ControlResponse | ControlProgress): void => {
      if (!socket.destroyed && socket.writable) socket.write(encodeLine(r));
    };
    socket.on('data', (chunk: string) => {
      if (refused) return;
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line.trim() === '') continue;
        chain = chain.then(() => this.answer(line, admin, log, reply).then(reply));
      }
      if (Buffer.byteLength(pending) > MAX_REQUEST_BYTES) {
        refused = true;
        pending = '';
        const error = { code: 'BAD_ARGUMENT', message: `a control request is limited to ${MAX_REQUEST_BYTES} bytes` };
        chain = chain.then(() => {
          reply({ id: null, ok: false, error });
          socket.end();
        });
      }
    });
  }

  private async answer(line: string, admin: ImageAdmin, log: Logger, send: (m: ControlProgress) => void): Promise<ControlResponse> {
    let id: number | null = null;
    try {
      const req = parseRequest(line);
      id = req.id;
      log.debug({ op: req.op }, 'control request');
      // At most one progress line per PROGRESS_INTERVAL_MS, and the last one, so a fast copy does
      // not flood the channel.
      let last = 0;
      const progress = (done: number, total: number) => {
        const now = Date.now();
        if (done < total && now - last < PROGRESS_INTERVAL_MS) return;
        last = now;
        send({ id: req.id, progress: { done, total } });
      };
      return { id, ok: true, result: (await call(admin, req, progress)) ?? null };
    } catch (err) {
      const error = errorBody(err);
      if (!(err instanceof IomapdError)) log.error({ err }, 'control request failed with an unexpected error');
      else if (error.code === 'IO') log.warn({ err }, 'control request failed');
      return { id, ok: false, error };
    }
  }
}

/** Sets the process umask, returning the old one; null where it cannot be changed (a worker thread). */
function setUmask(mask: number): number | null {
  try {
    return process.umask(mask);
  } catch {
    return null;
  }
}
