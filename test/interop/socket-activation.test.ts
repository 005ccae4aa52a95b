// systemd socket activation: iomapd serves the listening sockets it is handed (LISTEN_FDS) instead
// of binding its own. systemd-socket-activate binds a TCP port and a Unix path at once and starts
// iomapd on the first connection; nbdinfo and libnbd start iomapd themselves with one socket
// (`nbdinfo -- [ iomapd serve ... ]`), reading its answers while iomapd's logs go to stderr.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAIN, NODE } from '../support/daemon.ts';
import { pythonWithNbd, requireTool, runOk } from './harness.ts';

const MiB = 1024 * 1024;
const SERVE = [NODE, MAIN, 'serve'];

let dir: string;
let children: ChildProcess[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-activation-'));
});
afterEach(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children = [];
  await rm(dir, { recursive: true, force: true });
});

/** A TCP port free a moment ago (systemd-socket-activate needs a number up front). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** What to serve: an image with volume `default`, or a raw file; returns the serve arguments. */
function target(kind: 'image' | 'raw'): string[] {
  if (kind === 'raw') return [join(dir, 'disk.raw'), '--raw', '--size', '16M'];
  const image = join(dir, 'disk.iomapd');
  const r = spawnSync(NODE, [MAIN, 'create', image, '--size', '16M'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return [image];
}

/** systemd-socket-activate with `listen` addresses, resolved once it listens on all of them. */
async function activate(listen: string[], serveArgs: string[]): Promise<{ child: ChildProcess; output: () => string; exit: Promise<number | null> }> {
  const args = listen.flatMap((l) => ['-l', l]);
  const child = spawn('systemd-socket-activate', [...args, '--', ...SERVE, ...serveArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  for (let i = 0; i < 200 && (out.match(/^Listening on /gm) ?? []).length < listen.length; i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  expect((out.match(/^Listening on /gm) ?? []).length, out).toBe(listen.length);
  return { child, output: () => out, exit };
}

describe('systemd socket activation', () => {
  for (const kind of ['image', 'raw'] as const) {
    it(`serves a TCP and a Unix listener at once from systemd-socket-activate (${kind})`, async (ctx) => {
      requireTool(ctx, 'systemd-socket-activate', 'qemu-io', 'nbdinfo');
      const port = await freePort();
      const sock = join(dir, 'nbd.sock');
      const served = await activate([`127.0.0.1:${port}`, sock], target(kind));
      const tcp = `nbd://127.0.0.1:${port}/`;
      const unix = `nbd+unix:///?socket=${sock}`;
      // The first connection starts iomapd; it then serves both sockets.
      await runOk('qemu-io', ['-f', 'raw', tcp, '-c', 'write -P 0xa5 1M 1M', '-c', 'flush']);
      await runOk('qemu-io', ['-f', 'raw', unix, '-c', 'read -P 0xa5 1M 1M', '-c', 'read -P 0 0 1M']);
      for (const uri of [tcp, unix]) {
        const info = JSON.parse((await runOk('nbdinfo', ['--json', uri])).stdout) as { exports: Array<{ 'export-size': number }> };
        expect(info.exports[0]!['export-size']).toBe(16 * MiB);
      }
      const log = served.output();
      expect(log).toContain('socket activation: serving the sockets passed in LISTEN_FDS');
      expect(log).toContain(`"address":"127.0.0.1:${port}"`);
      expect(log).toContain(`"address":"${sock}"`);
      // systemd-socket-activate execs iomapd in its own process: SIGTERM stops iomapd cleanly.
      served.child.kill('SIGTERM');
      expect(await served.exit, log).toBe(0);
      expect(served.output()).toContain('"msg":"stopped"');
      // The socket file belongs to whoever bound it: iomapd leaves it.
      expect(existsSync(sock)).toBe(true);
      if (kind === 'image') await runOk(NODE, [MAIN, 'check', join(dir, 'disk.iomapd')]);
    }, 60_000);

    it(`answers nbdinfo -- [ iomapd serve ... ] with clean stdout, and libnbd's own activation (${kind})`, async (ctx) => {
      requireTool(ctx, 'nbdinfo', 'python3-nbd');
      const args = target(kind);
      const r = await runOk('nbdinfo', ['--json', '--', '[', ...SERVE, ...args, ']']);
      const info = JSON.parse(r.stdout) as { exports: Array<{ 'export-size': number; block_size_minimum: number }> };
      expect(info.exports[0]!['export-size']).toBe(16 * MiB);
      expect(r.stderr).toContain('"msg":"listening"');
      // libnbd starts the server itself, writes, flushes and reads back over the one socket.
      const script = String.raw`
import json, sys, nbd
h = nbd.NBD()
h.connect_systemd_socket_activation(json.loads(sys.argv[1]))
h.pwrite(b'\x3c' * 65536, 3 * 1048576)
h.flush()
assert h.pread(65536, 3 * 1048576) == b'\x3c' * 65536
assert h.pread(4096, 0) == bytes(4096)
h.shutdown()
print('ok')
`;
      const py = await runOk(pythonWithNbd()!, ['-c', script, JSON.stringify([...SERVE, ...args])]);
      expect(py.stdout.trim()).toBe('ok');
    }, 60_000);
  }

  it('refuses --listen or --socket together with passed sockets (BAD_ARGUMENT, exit 1)', () => {
    for (const flag of [['--listen', '127.0.0.1:0'], ['--socket', join(dir, 'x.sock')]]) {
      // `exec` keeps the shell's pid, so LISTEN_PID=$$ names the iomapd process.
      const cmd = `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`;
      const r = spawnSync('sh', ['-c', cmd, NODE, MAIN, 'serve', '--size', '1M', ...flag], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toContain('iomapd: BAD_ARGUMENT: socket activation passed 1 listening socket (LISTEN_FDS); --listen and --socket cannot be given with them');
      expect(r.stdout + r.stderr).not.toContain('"msg":"listening"');
    }
  });

  it('ignores LISTEN_FDS meant for another process and binds its own address', async () => {
    const port = await freePort();
    const child = spawn(NODE, [MAIN, 'serve', '--size', '1M', '--listen', `127.0.0.1:${port}`], {
      env: { ...process.env, LISTEN_PID: '1', LISTEN_FDS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 400 && !out.includes('"msg":"listening"'); i++) await new Promise((r) => setTimeout(r, 25));
    expect(out).toContain(`"address":"127.0.0.1:${port}"`);
    expect(out).not.toContain('socket activation');
    child.kill('SIGTERM');
  }, 30_000);
});
