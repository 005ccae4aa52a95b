// The request metrics in process: an NbdServer over a device whose calls a test holds or fails,
// scraped through the same prom-client registry `serve --metrics` serves. Requests in flight show
// while they are held, their latency includes the time held, and each failure is counted under
// the errno the client got.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { metricsRegistry } from '../../src/control/metrics.ts';
import { MemoryDevice } from '../../src/devices/memory-device.ts';
import { NbdErr } from '../../src/protocol/constants.ts';
import { ExportRegistry } from '../../src/server/export-registry.ts';
import { NbdServer } from '../../src/server/nbd-server.ts';
import { IomapdError } from '../../src/util/errors.ts';
import { silentLogger } from '../../src/util/log.ts';
import { parseScrape, type Scrape } from '../support/prometheus-text.ts';
import { NbdRequestError, TestClient } from '../support/test-client.ts';
import { Gate, InstrumentedDevice, sleep, type DeviceHook } from '../support/test-devices.ts';

let dir: string;
let server: NbdServer;
let metrics: Registry;
let device: InstrumentedDevice;
let socket: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'iomapd-metrics-it-'));
  device = new InstrumentedDevice(new MemoryDevice({ size: 4 * 1024 * 1024 }));
  const exports = new ExportRegistry();
  exports.add({ name: 'disk', description: '', device });
  server = new NbdServer(exports, silentLogger);
  metrics = metricsRegistry({ server, exports, image: null, gates: null });
  socket = join(dir, 'nbd.sock');
  await server.listenUnix(socket);
});

afterEach(async () => {
  await server.shutdown(2000);
  await rm(dir, { recursive: true, force: true });
});

const scrape = async (): Promise<Scrape> => parseScrape(await metrics.metrics());
const requests = (s: Scrape, command: string, result: string) => s.value('iomapd_requests_total', { export: 'disk', command, result }) ?? 0;

async function failsWith(p: Promise<unknown>, errno: number): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NbdRequestError);
  expect((err as NbdRequestError).errno).toBe(errno);
}

describe('request metrics', () => {
  it('shows held requests in flight, and counts them with their time once answered', async () => {
    const gate = new Gate();
    device.hook = (async (op) => {
      if (op === 'write') await gate.wait;
    }) satisfies DeviceHook;
    const client = await TestClient.open(socket, 'disk');
    const writes = Array.from({ length: 8 }, (_, i) => client.writeAt(i * 4096, Buffer.alloc(4096, i)));
    for (let i = 0; i < 200 && device.active < 8; i++) await sleep(5);
    const held = await scrape();
    expect(held.value('iomapd_requests_in_flight', { export: 'disk' })).toBe(8);
    expect(held.value('iomapd_connections', { export: 'disk' })).toBe(1);
    expect(requests(held, 'WRITE', 'ok')).toBe(0);
    await sleep(60);
    gate.open();
    await Promise.all(writes);
    const after = await scrape();
    expect(after.value('iomapd_requests_in_flight', { export: 'disk' })).toBe(0);
    expect(requests(after, 'WRITE', 'ok')).toBe(8);
    expect(after.value('iomapd_written_bytes_total', { export: 'disk' })).toBe(8 * 4096);
    expect(after.value('iomapd_request_duration_seconds_count', { export: 'disk', command: 'WRITE' })).toBe(8);
    // Each write was held at least 60 ms: none is in a bucket at or below 50 ms.
    expect(after.value('iomapd_request_duration_seconds_bucket', { export: 'disk', command: 'WRITE', le: '0.05' })).toBe(0);
    expect(after.value('iomapd_request_duration_seconds_sum', { export: 'disk', command: 'WRITE' })).toBeGreaterThanOrEqual(8 * 0.06);
    await client.close();
  });

  it('counts each failure under the errno the client got, refusals at validation included', async () => {
    let flushes = 0;
    device.hook = ((op, offset) => {
      if (op === 'write' && offset === 0) throw new IomapdError('NO_SPACE', 'full');
      if (op === 'read' && offset === 0) throw new IomapdError('IO', 'bad sector');
      if (op === 'flush' && flushes++ === 0) throw new Error('a bug'); // the shutdown's flush then succeeds
    }) satisfies DeviceHook;
    const client = await TestClient.open(socket, 'disk');
    await failsWith(client.writeAt(0, Buffer.alloc(512)), NbdErr.ENOSPC);
    await failsWith(client.readAt(0, 512), NbdErr.EIO);
    await failsWith(client.flush(), NbdErr.EIO); // an unexpected error is EIO
    await failsWith(client.writeAt(1, Buffer.alloc(512)), NbdErr.EINVAL); // misaligned: refused before the device
    await failsWith(client.readAt(4 * 1024 * 1024, 512), NbdErr.EINVAL); // past the end
    await client.readAt(512, 512);
    const s = await scrape();
    expect(requests(s, 'WRITE', 'ENOSPC')).toBe(1);
    expect(requests(s, 'WRITE', 'EINVAL')).toBe(1);
    expect(requests(s, 'WRITE', 'ok')).toBe(0);
    expect(requests(s, 'READ', 'EIO')).toBe(1);
    expect(requests(s, 'READ', 'EINVAL')).toBe(1);
    expect(requests(s, 'READ', 'ok')).toBe(1);
    expect(requests(s, 'FLUSH', 'EIO')).toBe(1);
    expect(s.value('iomapd_written_bytes_total', { export: 'disk' })).toBe(0);
    expect(s.value('iomapd_read_bytes_total', { export: 'disk' })).toBe(512);
    expect(s.value('iomapd_request_duration_seconds_count', { export: 'disk', command: 'READ' })).toBe(3);
    expect(s.value('iomapd_request_duration_seconds_count', { export: 'disk', command: 'WRITE' })).toBe(2);
    await client.close();
  });
});
