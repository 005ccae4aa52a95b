// `iomapd serve --metrics`: /metrics scraped while libnbd's Python API (what nbdsh runs) sends a
// known mix of requests. Counters move by exactly what was sent, histogram counts match the
// requests, an error is counted under its errno; bad --metrics values and a port in use fail
// before anything listens.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Daemon, MAIN, NODE, type LogEntry } from '../support/daemon.ts';
import { TestClient } from '../support/test-client.ts';
import { pythonWithNbd, requireTool } from './harness.ts';
import { parseScrape, type Scrape } from '../support/prometheus-text.ts';

const SIZE = 16 * 1024 * 1024;

// Phase 1, then a pause with the connection open (the test scrapes), then phase 2.
const TRAFFIC = String.raw`
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.set_strict_mode(0)  # let libnbd send the reads past the end that the server must refuse
size = h.get_size()
for i in range(10):
    h.pwrite(bytes([i + 1]) * 65536, i * 65536)
for i in range(5):
    h.pread(4096, i * 4096)
h.flush()
h.flush()
for i in range(3):
    try:
        h.pread(512, size)
        sys.exit('a read past the end succeeded')
    except nbd.Error as e:
        assert e.errno == 'EINVAL', e.errno
print('phase1', flush=True)
sys.stdin.readline()
for i in range(20):
    h.pwrite(b'\x5a' * 4096, 4 * 1048576 + i * 4096, nbd.CMD_FLAG_FUA)
for i in range(7):
    h.pread(8192, i * 8192)
h.flush()
h.zero(8 * 1048576, 65536)  # count, offset
h.trim(9 * 1048576, 65536)
h.shutdown()
print('done', flush=True)
`;

const PHASE1 = { WRITE: 10, READ: 5, FLUSH: 2, EINVAL_READ: 3, written: 10 * 65536, read: 5 * 4096 };
const TOTAL = { WRITE: 30, READ: 12, FLUSH: 3, WRITE_ZEROES: 1, TRIM: 1, EINVAL_READ: 3, written: 10 * 65536 + 20 * 4096, read: 5 * 4096 + 7 * 8192 };

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-metrics-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** GET a path from the metrics address (`host:port`, or a socket path). */
function httpGet(address: string, path: string): Promise<{ status: number; type: string; body: string }> {
  const target = address.startsWith('/') ? { socketPath: address } : { host: address.slice(0, address.lastIndexOf(':')), port: Number(address.slice(address.lastIndexOf(':') + 1)) };
  return new Promise((resolve, reject) => {
    const req = request({ ...target, path, method: 'GET', timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

async function scrape(address: string): Promise<Scrape> {
  const r = await httpGet(address, '/metrics');
  expect(r.status).toBe(200);
  expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseScrape(r.body);
}

/** Starts `serve ARGS --metrics AT` and returns the daemon and the metrics address it logged. */
async function serveWithMetrics(args: string[], at: string, listen = ['--listen', '127.0.0.1:0']): Promise<{ daemon: Daemon; metrics: string }> {
  let metrics = '';
  const onLog = (e: LogEntry): void => {
    if (e.msg === 'metrics listening') metrics = String(e.metrics);
  };
  const daemon = await Daemon.start([...args, ...listen, '--metrics', at], { onLog });
  expect(metrics, daemon.describe()).not.toBe('');
  return { daemon, metrics };
}

/** The traffic script, stopped at its pause; resume() runs phase 2 and resolves when it exits 0. */
async function startTraffic(uri: string): Promise<{ child: ChildProcess; resume: () => Promise<void> }> {
  const child = spawn(pythonWithNbd()!, ['-c', TRAFFIC, uri], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout! });
  const next = (): Promise<string> =>
    new Promise((resolve, reject) => {
      lines.once('line', resolve);
      void exited.then((code) => reject(new Error(`traffic exited (${code}) early: ${stderr}`)));
    });
  expect(await next()).toBe('phase1');
  return {
    child,
    resume: async () => {
      const done = next();
      child.stdin!.write('go\n');
      expect(await done).toBe('done');
      expect(await exited, stderr).toBe(0);
    },
  };
}

/** Scrapes until `check` holds (a closed connection is counted out a moment after the client exits). */
async function eventually(address: string, check: (s: Scrape) => boolean): Promise<Scrape> {
  for (let i = 0; i < 100; i++) {
    const s = await scrape(address);
    if (check(s)) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  return scrape(address);
}

/** The request counters, histogram counts and bytes for export `e`, checked against `want`. */
function expectRequests(s: Scrape, e: string, want: Partial<typeof TOTAL>): void {
  const req = (command: string, result = 'ok') => s.value('iomapd_requests_total', { export: e, command, result }) ?? 0;
  expect(req('WRITE')).toBe(want.WRITE ?? 0);
  expect(req('READ')).toBe(want.READ ?? 0);
  expect(req('FLUSH')).toBe(want.FLUSH ?? 0);
  expect(req('WRITE_ZEROES')).toBe(want.WRITE_ZEROES ?? 0);
  expect(req('TRIM')).toBe(want.TRIM ?? 0);
  expect(req('READ', 'EINVAL')).toBe(want.EINVAL_READ ?? 0);
  expect(s.value('iomapd_written_bytes_total', { export: e })).toBe(want.written ?? 0);
  expect(s.value('iomapd_read_bytes_total', { export: e })).toBe(want.read ?? 0);
  // Every answered request is in its command's histogram, whatever its result.
  for (const command of ['WRITE', 'READ', 'FLUSH', 'WRITE_ZEROES', 'TRIM']) {
    const answered = s.sum('iomapd_requests_total', { export: e, command });
    expect(s.value('iomapd_request_duration_seconds_count', { export: e, command }) ?? 0, command).toBe(answered);
    if (answered === 0) continue;
    const buckets = s.samples('iomapd_request_duration_seconds_bucket', { export: e, command });
    expect(buckets.length).toBe(18);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    expect(buckets.at(-1)!.labels.le).toBe('+Inf');
    expect(buckets.at(-1)!.value).toBe(answered);
    expect(s.value('iomapd_request_duration_seconds_sum', { export: e, command })).toBeGreaterThan(0);
  }
}

describe('serve --metrics', () => {
  it('counts a libnbd client on an image exactly, while it is connected and after', async (ctx) => {
    requireTool(ctx, 'python3-nbd');
    const image = join(dir, 'disk.iomapd');
    expect(spawnSync(NODE, [MAIN, 'create', image, '--size', '64M', '--volume', 'vm'], { encoding: 'utf8' }).status).toBe(0);
    const { daemon, metrics } = await serveWithMetrics([image], '127.0.0.1:0');
    try {
      const before = await scrape(metrics);
      expectRequests(before, 'vm', {});
      const usedBefore = before.value('iomapd_space_used_bytes')!;
      const traffic = await startTraffic(daemon.uri);

      const mid = await scrape(metrics);
      expectRequests(mid, 'vm', PHASE1);
      expect(mid.value('iomapd_connections', { export: 'vm' })).toBe(1);
      expect(mid.value('iomapd_requests_in_flight', { export: 'vm' })).toBe(0);
      expect(mid.value('iomapd_space_used_bytes')).toBeGreaterThanOrEqual(usedBefore + PHASE1.written);

      await traffic.resume();
      const after = await eventually(metrics, (s) => s.value('iomapd_connections', { export: 'vm' }) === 0);
      expectRequests(after, 'vm', TOTAL);
      expect(after.value('iomapd_connections', { export: 'vm' })).toBe(0);
      // FLUSHes and the 20 FUA writes into new blocks each waited for a journal commit; none
      // was a pure overwrite, so no data-only sync.
      expect(after.value('iomapd_fua_shortcuts_total', { export: 'vm' })).toBe(0);
      expect(after.value('iomapd_commit_duration_seconds_count')).toBe(TOTAL.FLUSH + 20);
      expect(after.value('iomapd_data_sync_duration_seconds_count')).toBe(0);
      expect(after.value('iomapd_journal_commits_total', { export: 'vm' })).toBeGreaterThanOrEqual(20);
      expect(after.value('iomapd_zeroed_bytes_total', { export: 'vm' })).toBe(8 * 1048576 + 9 * 1048576);
      expect(after.value('iomapd_cow_copies_total', { export: 'vm' })).toBe(0);
      expect(after.value('iomapd_allocation_failures_total', { export: 'vm' })).toBe(0);
      expect(after.value('iomapd_space_free_bytes')! + after.value('iomapd_space_used_bytes')!).toBe(after.value('iomapd_space_capacity_bytes'));
      expect(after.value('iomapd_space_shared_bytes')).toBe(0);
      // The buffered image's inline-I/O gates saw at least the client's reads and writes.
      expect(after.sum('iomapd_inline_io_calls_total', { direction: 'write' })).toBeGreaterThanOrEqual(TOTAL.WRITE);
      expect(after.value('process_resident_memory_bytes')).toBeGreaterThan(0);
      expect(after.value('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);

      const other = await httpGet(metrics, '/');
      expect(other.status).toBe(404);
      expect((await httpGet(metrics, '/metrics/x')).status).toBe(404);
    } finally {
      await daemon.stop();
    }
  }, 60_000);

  it('counts a raw file served with --raw, scraped over a Unix socket', async (ctx) => {
    requireTool(ctx, 'python3-nbd');
    const raw = join(dir, 'disk.raw');
    const { daemon, metrics } = await serveWithMetrics([raw, '--raw', '--size', String(SIZE)], join(dir, 'metrics.sock'));
    try {
      expect(metrics).toBe(join(dir, 'metrics.sock'));
      const traffic = await startTraffic(daemon.uri);
      expectRequests(await scrape(metrics), '', PHASE1);
      await traffic.resume();
      const after = await eventually(metrics, (s) => s.value('iomapd_connections', { export: '' }) === 0);
      expectRequests(after, '', TOTAL);
      // A raw file has no image: no journal, no space of its own; its gates are there.
      expect(after.samples('iomapd_journal_commits_total', {})).toEqual([]);
      expect(after.samples('iomapd_space_used_bytes', {})).toEqual([]);
      expect(after.sum('iomapd_inline_io_calls_total', { direction: 'read' })).toBeGreaterThanOrEqual(TOTAL.READ);
      expect((await httpGet(metrics, '/other')).status).toBe(404);
    } finally {
      await daemon.stop();
    }
  }, 60_000);

  it('shows shared bytes once a snapshot shares a volume, copy-on-write copies and checkpoints', async () => {
    const image = join(dir, 'disk.iomapd');
    const cli = (...args: string[]) => spawnSync(NODE, [MAIN, ...args], { encoding: 'utf8' });
    expect(cli('create', image, '--size', '64M', '--volume', 'vm').status).toBe(0);
    const socket = join(dir, 'nbd.sock');
    const { daemon, metrics } = await serveWithMetrics([image], '127.0.0.1:0', ['--socket', socket]);
    try {
      const client = await TestClient.open(socket, 'vm');
      await client.writeAt(0, Buffer.alloc(1048576, 7));
      await client.flush();
      const snap = spawnSync(NODE, [MAIN, 'snapshot', image, 'vm', 'vm-1'], { encoding: 'utf8' });
      expect(snap.status, snap.stderr).toBe(0);
      const s = await scrape(metrics);
      expect(s.value('iomapd_space_shared_bytes')).toBe(1048576);
      expect(s.value('iomapd_volumes')).toBe(2);
      // A write into the shared range is copied on write.
      await client.writeAt(0, Buffer.alloc(4096, 9));
      expect((await scrape(metrics)).value('iomapd_cow_copies_total', { export: 'vm' })).toBe(1);
      // Journal commits fill the ring; past half of it the store checkpoints.
      const before = (await scrape(metrics)).value('iomapd_journal_checkpoints_total');
      expect(before).toBe(0);
      let checkpoints = 0;
      for (let i = 0; i < 2000 && checkpoints === 0; i++) {
        await client.writeAt(2 * 1048576 + i * 4096, Buffer.alloc(4096, 1));
        await client.flush();
        if (i % 50 === 49) checkpoints = (await scrape(metrics)).value('iomapd_journal_checkpoints_total')!;
      }
      expect(checkpoints).toBeGreaterThanOrEqual(1);
      await client.close();
    } finally {
      await daemon.stop();
    }
  }, 60_000);

  it('refuses bad --metrics values before listening (BAD_ARGUMENT, exit 1)', async () => {
    for (const bad of ['nonsense', '127.0.0.1:70000', ':', 'host:port']) {
      const r = spawnSync(NODE, [MAIN, 'serve', '--size', '1M', '--listen', '127.0.0.1:0', '--metrics', bad], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status, `${bad}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(/^iomapd: BAD_ARGUMENT: --metrics .*(HOST:PORT)/m);
      expect(r.stdout).not.toMatch(/"msg":"listening"/);
    }
  }, 60_000);

  it('fails clearly when the metrics port is in use, before the NBD listener', async () => {
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const port = (squatter.address() as AddressInfo).port;
    try {
      const r = spawnSync(NODE, [MAIN, 'serve', '--size', '1M', '--listen', '127.0.0.1:0', '--metrics', `127.0.0.1:${port}`], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toContain(`iomapd: BAD_ARGUMENT: --metrics 127.0.0.1:${port}: cannot listen: the address is already in use`);
      expect(r.stdout).not.toMatch(/"msg":"listening"/);
    } finally {
      squatter.close();
    }
  }, 30_000);
});
