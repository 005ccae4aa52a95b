// An in-process NbdServer on a temporary Unix socket or on 127.0.0.1 port 0, for integration tests.
// Every client the fixture opens is destroyed on stop, and stop waits a bounded time.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockDevice } from '../../src/engine/block-device.ts';
import { ExportRegistry } from '../../src/server/export-registry.ts';
import type { ServerLimits } from '../../src/server/limits.ts';
import { NbdServer } from '../../src/server/nbd-server.ts';
import { silentLogger } from '../../src/util/log.ts';
import { TestClient, type Target } from './test-client.ts';

export type Transport = 'unix' | 'tcp';
export const TRANSPORTS: readonly Transport[] = ['unix', 'tcp'];

export interface ExportSpec {
  readonly name: string;
  readonly description?: string;
  readonly device: BlockDevice;
}

export interface TestServer {
  readonly server: NbdServer;
  readonly target: Target;
  /** A raw client, destroyed by `stop()` if the test leaves it open. */
  connect(): Promise<TestClient>;
  /** Destroys the fixture's clients, shuts the server down (bounded), removes the temp dir. */
  stop(): Promise<void>;
}

export async function startServer(exports: readonly ExportSpec[], transport: Transport, limits: Partial<ServerLimits> = {}): Promise<TestServer> {
  const registry = new ExportRegistry();
  for (const e of exports) registry.add({ name: e.name, description: e.description ?? '', device: e.device });
  const server = new NbdServer(registry, silentLogger, limits);
  let dir: string | undefined;
  let target: Target;
  if (transport === 'unix') {
    dir = await mkdtemp(join(tmpdir(), 'iomapd-it-'));
    const path = join(dir, 'nbd.sock');
    await server.listenUnix(path);
    target = { path };
  } else {
    const addr = await server.listenTcp('127.0.0.1', 0);
    target = { host: '127.0.0.1', port: Number(addr.address.slice(addr.address.lastIndexOf(':') + 1)) };
  }
  const clients: TestClient[] = [];
  let stopped = false;
  return {
    server,
    target,
    async connect() {
      const c = await TestClient.connect(target);
      clients.push(c);
      return c;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const c of clients) c.destroy();
      await server.shutdown(2000);
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    },
  };
}
