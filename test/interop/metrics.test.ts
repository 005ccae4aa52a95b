// `iomapd serve --metrics`: /metrics scraped while libnbd's Python API (what nbdsh runs) sends a
// known mix of requests. Counters move by exactly what was sent, histogram counts match the
// requests, an error is counted under its errno; bad --metrics values and a port in use fail
// before anything listens. The inline-I/O counters show 1 MiB writes placed by the client's transport.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAIN, NODE } from '../support/daemon.ts';
import { TestClient } from '../support/test-client.ts';
import { pythonWithNbd, requireTool } from './harness.ts';
import { PHASE1, TOTAL, eventually, expectRequests, httpGet, scrape, serveWithMetrics, startTraffic } from './metrics-harness.ts';

const SIZE = 16 * 1024 * 1024;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-metrics-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

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

  it('1 MiB writes run on the event loop for a TCP client and in the thread pool while a Unix-socket client waits', async (ctx) => {
    // util/inline-io.ts writeInlineLimit: a Unix-socket client can send only its socket buffer
    // ahead, so it would stall while the loop writes; a TCP client's window lets it run ahead.
    requireTool(ctx, 'python3-nbd');
    const writeAndCheck = String.raw`
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(8):
    h.pwrite(bytes([int(sys.argv[2]) + i]) * 1048576, i * 1048576)
for i in range(8):
    assert h.pread(1048576, i * 1048576) == bytes([int(sys.argv[2]) + i]) * 1048576, i
h.shutdown()
`;
    /** Serves a raw file on `listen`, sends the script, and returns where its writes ran. */
    const writes = async (listen: string[], seed: number): Promise<{ inline: number; pool: number }> => {
      const { daemon, metrics } = await serveWithMetrics([join(dir, `disk${seed}.raw`), '--raw', '--size', String(SIZE)], '127.0.0.1:0', listen);
      try {
        const r = spawnSync(pythonWithNbd()!, ['-c', writeAndCheck, daemon.uri, String(seed)], { encoding: 'utf8', timeout: 30_000 });
        expect(r.status, r.stderr).toBe(0);
        const s = await scrape(metrics);
        const calls = (path: string) => s.value('iomapd_inline_io_calls_total', { direction: 'write', path })!;
        return { inline: calls('inline'), pool: calls('pool') };
      } finally {
        await daemon.stop();
      }
    };
    const tcp = await writes(['--listen', '127.0.0.1:0'], 1);
    expect(tcp.inline + tcp.pool).toBe(8);
    // Inline unless two writes in a row were slow (over 1.2 ms: a busy machine), which pools for 50 ms.
    expect(tcp.inline).toBeGreaterThan(0);
    expect(await writes(['--socket', join(dir, 'nbd.sock')], 100)).toEqual({ inline: 0, pool: 8 });
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
