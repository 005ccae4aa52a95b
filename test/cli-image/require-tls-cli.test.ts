// Volumes marked require-tls, through the real CLI and a served image's control channel: the mark
// is set at create or with `volume set`, shown by ls/info; `serve --tls off` does not export such
// a volume (one warning names it), `serve --tls on` answers a plain client's request for it with
// a TLS-required error and serves it over TLS; `volume set` on a served image moves the export.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, type LogEntry, runCli } from '../support/daemon.ts';
import { type TlsFixtures, makeTlsFixtures } from '../support/tls-fixtures.ts';

const MiB = 1024 * 1024;
let dir = '';
let tls: TlsFixtures;
/** A libnbd client certificate directory: the CA only (the server does not verify peers here). */
let clientDir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-require-tls-'));
  tls = makeTlsFixtures();
  clientDir = join(dir, 'client-pki');
  mkdirSync(clientDir);
  copyFileSync(tls.caCert, join(clientDir, 'ca-cert.pem'));
});
afterAll(async () => {
  tls?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function cli(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const r = await runCli(args);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

/** nbdinfo on a URI: exit code and output (a missing nbdinfo fails: it is the real client here). */
function nbdinfo(...args: string[]): { code: number; out: string; err: string } {
  // LIBNBD_DEBUG: libnbd shows ERR_TLS_REQD and ERR_UNSUP alike (ENOTSUP); its debug lines quote
  // the server's own message, which tells them apart.
  const r = spawnSync('nbdinfo', args, { encoding: 'utf8', timeout: 30_000, env: { ...process.env, LIBNBD_DEBUG: '1' } });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function unixUri(socket: string, name: string, scheme = 'nbd+unix'): string {
  return `${scheme}:///${name}?socket=${socket}`;
}

async function imageWithSecret(name: string): Promise<string> {
  const img = join(dir, `${name}.img`);
  expect((await cli('create', img, '--size', '8M')).code).toBe(0);
  const made = await cli('volume', 'create', img, 'secret', '--size', '4M', '--require-tls');
  expect(made.code, made.err).toBe(0);
  expect(made.out).toMatch(/TLS required/);
  return img;
}

async function serving(args: string[], body: (socket: string, logs: LogEntry[]) => Promise<void>): Promise<void> {
  const socket = join(dir, `s${Math.random().toString(36).slice(2, 8)}.sock`);
  const logs: LogEntry[] = [];
  const daemon = await Daemon.start([...args, '--socket', socket], { onLog: (e) => logs.push(e) });
  try {
    await body(socket, logs);
  } finally {
    const { code } = await daemon.stop(15_000);
    expect(code, `serve did not stop cleanly:\n${daemon.output()}`).toBe(0);
  }
}

describe('volume create/set --require-tls', () => {
  it('sets and clears the mark, shown by volume ls and info; the image is at format version 3 (which knows the flag)', async () => {
    const img = await imageWithSecret('marks');
    const ls = JSON.parse((await cli('volume', 'ls', img, '--json')).out) as Array<{ name: string; requireTls: boolean }>;
    expect(ls.map((v) => [v.name, v.requireTls])).toEqual([['default', false], ['secret', true]]);
    const info = (await cli('info', img)).out;
    expect(info).toMatch(/format version: 3/);
    expect(info).toMatch(/secret\t4M\tvolume require-tls\t/);
    expect(info).toMatch(/default\t8M\tvolume\t/);
    const on = await cli('volume', 'set', img, 'default', '--require-tls', 'on');
    expect(on.out).toBe('volume default: TLS required\n');
    const off = await cli('volume', 'set', img, 'secret', '--require-tls', 'off');
    expect(off.out).toBe('volume secret: TLS not required\n');
    expect((await cli('volume', 'ls', img)).out).toMatch(/^default\t8M\tvolume require-tls\t.*\nsecret\t4M\tvolume\t/);
    const bad = await cli('volume', 'set', img, 'secret', '--require-tls', 'maybe');
    expect([bad.code, bad.err]).toEqual([1, 'iomapd: BAD_ARGUMENT: --require-tls takes on or off, got "maybe"\n']);
    expect((await cli('volume', 'set', img, 'nope', '--require-tls', 'on')).err).toMatch(/^iomapd: NOT_FOUND: /);
    expect((await cli('check', img)).code).toBe(0);
  }, 60_000);
});

describe('serve and require-tls volumes', () => {
  it('--tls off: the volume is not exported, one warning names it; the others are served', async () => {
    const img = await imageWithSecret('off');
    await serving([img], async (socket, logs) => {
      const held = logs.filter((e) => e.level === 40 && String(e.msg).includes('require TLS'));
      expect(held.map((e) => e.volumes)).toEqual([['secret']]);
      const list = nbdinfo('--list', '--json', unixUri(socket, ''));
      expect(list.code, list.err).toBe(0);
      expect((JSON.parse(list.out) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name'])).toEqual(['default']);
      const open = nbdinfo(unixUri(socket, 'secret'));
      expect(open.code).not.toBe(0);
      // ERR_UNKNOWN, as for a name the server never had (libnbd shows it as ENOENT).
      expect(open.err).toMatch(/nbdinfo: nbd_opt_go: server replied with error to opt_go request: No such file or directory/);
    });
  }, 60_000);

  it('--tls on: a plain client gets a TLS-required error and does not list it; over TLS it works', async () => {
    const img = await imageWithSecret('on');
    await serving([img, '--tls', 'on', '--tls-certificates', tls.certDir], async (socket) => {
      const plain = nbdinfo(unixUri(socket, 'secret'));
      expect(plain.code).not.toBe(0);
      expect(plain.err).toMatch(/nbd_opt_go: handshake: server error message: export "secret" requires TLS/);
      const list = JSON.parse(nbdinfo('--list', '--json', unixUri(socket, '')).out) as { exports: Array<{ 'export-name': string }> };
      expect(list.exports.map((e) => e['export-name'])).toEqual(['default']);
      const over = nbdinfo('--json', `${unixUri(socket, 'secret', 'nbds+unix')}&tls-certificates=${clientDir}`);
      expect(over.code, over.err).toBe(0);
      expect((JSON.parse(over.out) as { exports: Array<{ 'export-size': number }> }).exports[0]!['export-size']).toBe(4 * MiB);
    });
  }, 60_000);

  it('through the control channel: create --require-tls and set on/off move the export (--tls off)', async () => {
    const img = join(dir, 'ctl.img');
    expect((await cli('create', img, '--size', '8M')).code).toBe(0);
    await serving([img], async (socket, logs) => {
      const names = (): string[] =>
        (JSON.parse(nbdinfo('--list', '--json', unixUri(socket, '')).out) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']);
      expect((await cli('volume', 'create', img, 'extra', '--size', '4M', '--require-tls')).code).toBe(0);
      expect(names()).toEqual(['default']);
      expect(logs.some((e) => e.level === 40 && e.volume === 'extra')).toBe(true);
      expect((await cli('volume', 'set', img, 'extra', '--require-tls', 'off')).out).toBe('volume extra: TLS not required\n');
      expect(names()).toEqual(['default', 'extra']);
      expect((await cli('volume', 'set', img, 'default', '--require-tls', 'on')).code).toBe(0);
      expect(names()).toEqual(['extra']);
      const ls = JSON.parse((await cli('volume', 'ls', img, '--json')).out) as Array<{ name: string; requireTls: boolean }>;
      expect(ls.map((v) => [v.name, v.requireTls])).toEqual([['default', true], ['extra', false]]);
    });
    expect((await cli('check', img)).code).toBe(0);
  }, 60_000);
});
