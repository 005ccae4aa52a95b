// RequestMetrics: which cell, bucket and byte counter one answered request lands in.
import { describe, expect, it, vi } from 'vitest';
import { Cmd, NbdErr } from '../../../src/protocol/constants.ts';
import { LATENCY_BUCKETS, METRIC_COMMANDS, METRIC_RESULTS, RequestMetrics, RequestMetricsTable } from '../../../src/server/request-metrics.ts';

const result = (name: string) => METRIC_RESULTS.indexOf(name);
const command = (name: string) => METRIC_COMMANDS.indexOf(name);

describe('RequestMetrics', () => {
  it('counts by command and result, and bytes only for successful READ and WRITE', () => {
    const m = new RequestMetrics();
    m.record(Cmd.WRITE, 0, 4096, 0);
    m.record(Cmd.WRITE, NbdErr.ENOSPC, 8192, 0);
    m.record(Cmd.READ, 0, 512, 0);
    m.record(Cmd.READ, NbdErr.EINVAL, 512, 0);
    m.record(Cmd.WRITE_ZEROES, 0, 1 << 20, 0);
    expect(m.count(Cmd.WRITE, result('ok'))).toBe(1);
    expect(m.count(Cmd.WRITE, result('ENOSPC'))).toBe(1);
    expect(m.count(Cmd.READ, result('EINVAL'))).toBe(1);
    expect(m.bytesWritten).toBe(4096);
    expect(m.bytesRead).toBe(512);
  });

  it('puts unknown commands and errnos in their catch-all cells', () => {
    const m = new RequestMetrics();
    m.record(77, NbdErr.EINVAL, 0, 0);
    m.record(Cmd.READ, 200, 0, 0);
    m.record(Cmd.READ, 70000, 0, 0);
    expect(m.count(command('UNKNOWN'), result('EINVAL'))).toBe(1);
    expect(m.count(Cmd.READ, result('other'))).toBe(2);
  });

  it('files latencies in the first bucket whose bound they do not exceed, +Inf last', () => {
    const m = new RequestMetrics();
    const now = vi.spyOn(performance, 'now');
    try {
      now.mockReturnValue(1000 + 0.3); // 300 µs after 1000 ms
      m.record(Cmd.FLUSH, 0, 0, 1000);
      now.mockReturnValue(1000 + 60_000); // a minute
      m.record(Cmd.FLUSH, 0, 0, 1000);
    } finally {
      now.mockRestore();
    }
    m.record(Cmd.FLUSH, 0, 0, 0); // refused at validation: 0 s
    const b = m.latencyBuckets(Cmd.FLUSH);
    expect(b.length).toBe(LATENCY_BUCKETS.length + 1);
    expect(b[0]).toBe(1);
    expect(b[LATENCY_BUCKETS.indexOf(0.0005)]).toBe(1);
    expect(b[LATENCY_BUCKETS.length]).toBe(1);
    expect([...b].reduce((a, n) => a + n, 0)).toBe(3);
    expect(m.latencySum[Cmd.FLUSH]).toBeCloseTo(60.0003, 6);
  });

  it('keeps one tally per export name for the table', () => {
    const t = new RequestMetricsTable();
    expect(t.forExport('a')).toBe(t.forExport('a'));
    expect(t.forExport('a')).not.toBe(t.forExport('b'));
    expect([...t.entries()].map(([n]) => n)).toEqual(['a', 'b']);
  });
});
