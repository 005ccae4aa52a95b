// What the metrics tests share: a libnbd traffic script with a pause between two phases of known
// requests, the exact counts it sends, and the scrape, serve and check helpers. Used by
// metrics.test.ts (image, raw file) and s3-operations.test.ts (an image in a bucket).
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { expect } from 'vitest';
import { Daemon, type LogEntry } from '../support/daemon.ts';
import { type Scrape, parseScrape } from '../support/prometheus-text.ts';
import { pythonWithNbd } from './harness.ts';

// Phase 1, then a pause with the connection open (the test scrapes), then phase 2.
export const TRAFFIC = String.raw`
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

export const PHASE1 = { WRITE: 10, READ: 5, FLUSH: 2, EINVAL_READ: 3, written: 10 * 65536, read: 5 * 4096 };
export const TOTAL = { WRITE: 30, READ: 12, FLUSH: 3, WRITE_ZEROES: 1, TRIM: 1, EINVAL_READ: 3, written: 10 * 65536 + 20 * 4096, read: 5 * 4096 + 7 * 8192 };

/** GET a path from the metrics address (`host:port`, or a socket path). */
export function httpGet(address: string, path: string): Promise<{ status: number; type: string; body: string }> {
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

export async function scrape(address: string): Promise<Scrape> {
  const r = await httpGet(address, '/metrics');
  expect(r.status).toBe(200);
  expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseScrape(r.body);
}

/** Starts `serve ARGS --metrics AT` and returns the daemon and the metrics address it logged. */
export async function serveWithMetrics(args: string[], at: string, listen = ['--listen', '127.0.0.1:0'], env?: NodeJS.ProcessEnv): Promise<{ daemon: Daemon; metrics: string }> {
  let metrics = '';
  const onLog = (e: LogEntry): void => {
    if (e.msg === 'metrics listening') metrics = String(e.metrics);
  };
  const daemon = await Daemon.start([...args, ...listen, '--metrics', at], { onLog, env });
  expect(metrics, daemon.describe()).not.toBe('');
  return { daemon, metrics };
}

/** The traffic script, stopped at its pause; resume() runs phase 2 and resolves when it exits 0. */
export async function startTraffic(uri: string): Promise<{ child: ChildProcess; resume: () => Promise<void> }> {
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
export async function eventually(address: string, check: (s: Scrape) => boolean): Promise<Scrape> {
  for (let i = 0; i < 100; i++) {
    const s = await scrape(address);
    if (check(s)) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  return scrape(address);
}

/** The request counters, histogram counts and bytes for export `e`, checked against `want`. */
export function expectRequests(s: Scrape, e: string, want: Partial<typeof TOTAL>): void {
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
