// The control channel in process: a daemon's parts (image file, engine, registry, NbdServer,
// ControlServer) in this process, driven through RemoteAdmin and raw socket lines, with NBD
// clients attached to show what the registry does and what BUSY protects.
import { link, lstat, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ReloadResult } from '../../src/control/admin.ts';
import { ControlServer, controlPath } from '../../src/control/control-server.ts';
import { DaemonAdmin } from '../../src/control/daemon-admin.ts';
import { LocalAdmin } from '../../src/control/local-admin.ts';
import { openAdmin, openDaemon } from '../../src/control/open-admin.ts';
import { RemoteAdmin } from '../../src/control/remote-admin.ts';
import { ServedImage } from '../../src/control/served-image.ts';
import { createImageFile } from '../../src/fs/image-file.ts';
import { ExportRegistry } from '../../src/server/export-registry.ts';
import { NbdServer } from '../../src/server/nbd-server.ts';
import { IomapdError } from '../../src/util/errors.ts';
import { silentLogger } from '../../src/util/log.ts';
import { TestClient } from '../support/test-client.ts';
import { CMD, pattern } from '../support/wire.ts';

const MiB = 1024 * 1024;

/** The daemon's reload here: no TLS, nothing to re-read, unless a test sets reloadError. */
let reloadError: Error | null = null;
async function noReload(): Promise<ReloadResult> {
  if (reloadError !== null) throw reloadError;
  return { tls: 'off', restrictedExports: 0 };
}

interface Daemon {
  image: string;
  served: ServedImage;
  registry: ExportRegistry;
  server: NbdServer;
  control: ControlServer;
  nbdPath: string;
}

let dir: string;
let d: Daemon;
const clients: TestClient[] = [];

async function startDaemon(image: string): Promise<Daemon> {
  const store = await createImageFile(image, { dataBytes: 16 * MiB });
  await store.createVolume('vol', 4 * MiB);
  const served = new ServedImage(store);
  const registry = new ExportRegistry();
  registry.add({ name: 'vol', description: '', device: served.engine.device('vol') });
  const server = new NbdServer(registry, silentLogger);
  const nbdPath = join(dir, 'nbd.sock');
  await server.listenUnix(nbdPath);
  const admin = new DaemonAdmin({ image: served, registry, server, description: 'test', tls: false, log: silentLogger, reload: noReload });
  const control = await ControlServer.listen(controlPath(image), admin, silentLogger);
  return { image, served, registry, server, control, nbdPath };
}

async function nbd(name: string): Promise<TestClient> {
  const c = await TestClient.connect({ path: d.nbdPath });
  clients.push(c);
  await c.negotiate({ name });
  return c;
}

/** Sends raw lines on a fresh control connection and collects `n` response lines. */
async function rawLines(lines: string, n: number): Promise<Array<Record<string, unknown>>> {
  const socket = connect({ path: controlPath(d.image) });
  socket.setEncoding('utf8');
  let got = '';
  socket.on('data', (c: string) => (got += c));
  socket.write(lines);
  const deadline = Date.now() + 5000;
  while (got.split('\n').length <= n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  socket.destroy();
  return got.split('\n').slice(0, n).map((l) => JSON.parse(l) as Record<string, unknown>);
}

beforeEach(async () => {
  reloadError = null;
  dir = await mkdtemp(join(tmpdir(), 'iomapd-control-'));
  d = await startDaemon(join(dir, 'img.iomapd'));
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await d.control.close();
  await d.server.shutdown(2000);
  await d.served.close();
  await rm(dir, { recursive: true, force: true });
});

describe('control socket file', () => {
  it('is owner-only (0600), next to the image, and removed on close', async () => {
    const st = await lstat(controlPath(d.image));
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    await d.control.close();
    await expect(stat(controlPath(d.image))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('replaces a stale socket a dead daemon left, and refuses to replace anything else', async () => {
    await d.control.close();
    // A socket file nobody listens on: bind one, keep a second name for it, close the first.
    const other = join(dir, 'other.sock');
    const s = createServer();
    await new Promise<void>((r) => s.listen(other, r));
    await link(other, controlPath(d.image));
    await new Promise<void>((r) => s.close(() => r()));
    const admin = new DaemonAdmin({ image: d.served, registry: d.registry, server: d.server, description: '', tls: false, log: silentLogger, reload: noReload });
    d.control = await ControlServer.listen(controlPath(d.image), admin, silentLogger);
    const remote = await RemoteAdmin.connect(controlPath(d.image));
    expect((await remote.listVolumes()).map((v) => v.name)).toEqual(['vol']);
    await remote.close();

    await d.control.close();
    await writeFile(controlPath(d.image), 'not a socket');
    await expect(ControlServer.listen(controlPath(d.image), admin, silentLogger)).rejects.toThrow(/not a socket/);
    await rm(controlPath(d.image));
    d.control = await ControlServer.listen(controlPath(d.image), admin, silentLogger);
  });
});

describe('image commands through the channel', () => {
  it('openAdmin finds the daemon through the image lock; new volumes, snapshots and clones become exports', async () => {
    const admin = await openAdmin(d.image, false);
    expect(admin).toBeInstanceOf(RemoteAdmin);
    await admin.createVolume('extra', 2 * MiB, { preallocate: false, readOnly: false });
    expect(d.registry.find('extra')?.device.size).toBe(2 * MiB);

    const c = await nbd('vol');
    c.send({ type: CMD.WRITE, cookie: 1n, offset: 0, payload: pattern(8192, 5) });
    expect((await c.reply()).error).toBe(0);
    const snap = await admin.snapshot('vol', 'snap');
    expect(snap).toMatchObject({ name: 'snap', snapshot: true });
    expect(d.registry.find('snap')?.device.readOnly).toBe(true);
    await admin.clone('snap', 'copy');
    expect(d.registry.find('copy')?.device.readOnly).toBe(false);

    const map = await admin.map('copy');
    expect(map[0]).toMatchObject({ offset: 0, length: 8192, type: 'mapped', shared: true });
    const info = await admin.info();
    expect(info.volumes.map((v) => v.name)).toEqual(['vol', 'extra', 'snap', 'copy']);
    expect((await admin.listVolumes()).length).toBe(4);

    const stats = await admin.stats();
    const vol = stats.exports.find((e) => e.name === 'vol')!;
    expect(vol).toMatchObject({ connections: 1, readOnly: false, size: 4 * MiB });
    expect(vol.counters.clientBytesWritten).toBe(8192);
    expect(stats.pid).toBe(process.pid);
    await admin.close();
  });

  it('refuses to remove or resize a volume with open connections (BUSY), and does both once they are gone', async () => {
    const admin = await openAdmin(d.image, false);
    const c = await nbd('vol');
    await expect(admin.deleteVolume('vol')).rejects.toMatchObject({ code: 'BUSY' });
    await expect(admin.resizeVolume('vol', 8 * MiB)).rejects.toMatchObject({ code: 'BUSY' });
    expect(d.registry.find('vol')).toBeDefined();
    await c.disconnect();
    // The server forgets the connection once its socket has closed.
    for (let i = 0; i < 100 && d.server.connectionsTo(d.registry.find('vol')!) > 0; i++) await new Promise((r) => setTimeout(r, 10));

    const resized = await admin.resizeVolume('vol', 8 * MiB);
    expect(resized.size).toBe(8 * MiB);
    expect(d.registry.find('vol')?.device.size).toBe(8 * MiB);
    await admin.deleteVolume('vol');
    expect(d.registry.list().map((e) => e.name)).toEqual([]);
    expect(await admin.listVolumes()).toEqual([]);
    await expect(admin.deleteVolume('vol')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await admin.close();
  });

  it('answers malformed lines and unknown ops with errors and keeps going; an oversized line closes the connection', async () => {
    const replies = await rawLines('not json\n{"id":2,"op":"nope"}\n{"id":3,"op":"map","args":{"volume":7}}\n{"id":4,"op":"volume.ls"}\n', 4);
    expect(replies.map((r) => [r.id, r.ok, (r.error as { code?: string } | undefined)?.code])).toEqual([
      [null, false, 'BAD_ARGUMENT'],
      [2, false, 'BAD_ARGUMENT'],
      [3, false, 'BAD_ARGUMENT'],
      [4, true, undefined],
    ]);
    const big = await rawLines(`{"id":1,"op":"${'x'.repeat(70 * 1024)}`, 1);
    expect(big[0]).toMatchObject({ ok: false, error: { code: 'BAD_ARGUMENT' } });
  });
});

describe('reload', () => {
  it("answers the daemon's reload result, and a failed reload's error as {ok:false,error}", async () => {
    const admin = await openDaemon(d.image);
    expect(await admin.reload()).toEqual({ tls: 'off', restrictedExports: 0 });
    reloadError = new IomapdError('BAD_ARGUMENT', '/etc/keys.psk line 2: expected IDENTITY:HEXKEY');
    await expect(admin.reload()).rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: '/etc/keys.psk line 2: expected IDENTITY:HEXKEY' });
    await admin.close();
    const [r] = await rawLines('{"id":7,"op":"reload"}\n', 1);
    expect(r).toEqual({ id: 7, ok: false, error: { code: 'BAD_ARGUMENT', message: '/etc/keys.psk line 2: expected IDENTITY:HEXKEY' } });
  });
});

describe('without a daemon', () => {
  it('opens an idle image directly; stats says NOT_RUNNING; a holder without a channel is LOCKED', async () => {
    const idle = join(dir, 'idle.iomapd');
    await (await createImageFile(idle, { dataBytes: 4 * MiB })).close();
    const admin = await openAdmin(idle, true);
    expect(admin).toBeInstanceOf(LocalAdmin);
    await expect(admin.stats()).rejects.toMatchObject({ code: 'NOT_RUNNING' });
    await expect(admin.reload()).rejects.toMatchObject({ code: 'NOT_RUNNING' });
    await admin.close();
    await expect(openDaemon(idle)).rejects.toMatchObject({ code: 'NOT_RUNNING' });

    await d.control.close();
    await expect(openAdmin(d.image, true)).rejects.toMatchObject({ code: 'LOCKED' });
  });
});
