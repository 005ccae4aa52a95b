// The gate that lets page-cache reads and writes run on the event loop (src/util/inline-io.ts),
// with a fake clock, and fdIo.pread / pwrite through both paths on a real file.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InlineIoGate, writeInlineLimit } from '../../../src/util/inline-io.ts';
import { workInFlight } from '../../../src/util/work-in-flight.ts';
import { fdIo, InlineIoGates } from '../../../src/util/fd-io.ts';

const ms = (n: number): bigint => BigInt(n) * 1_000_000n;
const us = (n: number): bigint => BigInt(n) * 1_000n;

describe('InlineIoGate', () => {
  it('auto admits reads up to 256 KiB and sends larger ones to the pool', () => {
    const g = new InlineIoGate('auto', () => 0);
    expect(g.admit(4096, 0n)).toBe(true);
    expect(g.admit(256 * 1024, 0n)).toBe(true);
    expect(g.admit(256 * 1024 + 512, 0n)).toBe(false);
    expect([g.inline, g.pooled]).toEqual([2, 1]);
  });

  it('a slow read without block input (preempted, not a miss) keeps reads inline', () => {
    let asked = 0;
    const g = new InlineIoGate('auto', () => (asked++, 7));
    g.record(4096, us(100), 0n); // fast: the input count is not even asked for
    expect(asked).toBe(1); // once, at construction
    g.record(4096, ms(5), ms(1)); // slow, count unchanged: preempted
    g.record(4096, ms(5), ms(2));
    expect(g.admit(4096, ms(3))).toBe(true);
    expect([asked, g.slow, g.misses]).toEqual([3, 2, 0]);
  });

  it('a miss sends reads to the pool for a back-off that doubles while probes keep missing', () => {
    let blocks = 0;
    const g = new InlineIoGate('auto', () => blocks);
    blocks += 8; // the disk was read during the next read
    g.record(4096, ms(1), ms(10));
    expect(g.admit(4096, ms(20))).toBe(false);
    expect(g.admit(4096, ms(60))).toBe(true); // 50 ms later: probe
    blocks += 8;
    g.record(4096, ms(1), ms(60)); // the probe missed too
    expect(g.admit(4096, ms(150))).toBe(false);
    expect(g.admit(4096, ms(161))).toBe(true); // 100 ms after the second miss
    g.record(4096, us(3), ms(161)); // a hit resets the back-off
    blocks += 8;
    g.record(4096, ms(1), ms(200));
    expect(g.admit(4096, ms(251))).toBe(true);
    expect(g.misses).toBe(3);
  });

  it('without a block-input witness (writes) two slow calls in a row back off, one alone does not', () => {
    const g = new InlineIoGate('auto', null);
    g.record(4096, us(10), 0n);
    expect(g.admit(4096, ms(1))).toBe(true);
    g.record(4096, ms(2), ms(1)); // slow once: most likely preempted
    expect(g.admit(4096, ms(2))).toBe(true);
    g.record(4096, us(3), ms(2)); // a normal call between slow ones breaks the run
    g.record(4096, ms(2), ms(3));
    expect(g.admit(4096, ms(4))).toBe(true);
    expect([g.slow, g.misses]).toEqual([2, 0]);
    g.record(4096, ms(2), ms(5)); // slow again, right after: blocked
    expect(g.admit(4096, ms(6))).toBe(false);
    expect(g.admit(4096, ms(55))).toBe(true);
    expect(g.misses).toBe(1);
  });

  it('calls preempted now and then (a busy machine) keep cheap I/O inline', () => {
    // Load 3 to 6 on two cores: every third call waits for a CPU, some of them past the slow limit.
    for (const witness of [null, () => 0]) {
      const g = new InlineIoGate('auto', witness);
      for (let i = 0; i < 3000; i++) {
        expect(g.admit(4096, ms(i))).toBe(true);
        const elapsed = i % 3 === 0 ? (i % 9 === 0 ? ms(3) : us(140)) : us(3);
        g.record(4096, elapsed, ms(i));
      }
      expect([g.pooled, g.costly, g.misses]).toEqual([0, 0, 0]);
      expect(g.slow).toBe(334);
    }
  });

  it('backs off when the lower quartile of a 32-call window costs more than 8 µs per 4 KiB', () => {
    const g = new InlineIoGate('auto', null, { alone: () => false }); // other requests in flight
    for (let i = 0; i < 200; i++) g.record(4096, us(3), ms(i)); // cheap calls: stay inline
    expect(g.admit(4096, ms(200))).toBe(true);
    let t = 200;
    while (g.admit(4096, ms(t)) && t < 400) g.record(4096, us(15), ms(t++)); // 15 µs each
    expect(t).toBeLessThan(400);
    expect(g.costly).toBe(1);
    // The back-off started at the last recorded call, ms(t - 1).
    expect(g.admit(4096, ms(t + 48))).toBe(false);
    expect(g.admit(4096, ms(t + 49))).toBe(true); // the probe after the back-off
    // A third of the calls waited for a CPU: the I/O itself is cheap.
    const waited = new InlineIoGate('auto', null);
    for (let i = 0; i < 320; i++) waited.record(4096, i % 3 === 0 ? us(100) : us(4), ms(i));
    expect(waited.costly).toBe(0);
    // Cheap only now and then (one call in eight): judged by what it usually costs.
    const mostlyCostly = new InlineIoGate('auto', null);
    for (let i = 0; i < 32; i++) mostlyCostly.record(4096, i % 8 === 0 ? us(3) : us(30), ms(i));
    expect(mostlyCostly.costly).toBe(1);
    // A 64 KiB call taking 40 µs is cheap per 4 KiB.
    const big = new InlineIoGate('auto', null);
    for (let i = 0; i < 200; i++) big.record(65536, us(40), ms(i));
    expect(big.costly).toBe(0);
  });

  it('a costly back-off pools only while other requests are in flight; a slow one pools alone too', () => {
    let alone = false;
    const g = new InlineIoGate('auto', null, { alone: () => alone });
    for (let i = 0; i < 32; i++) g.record(4096, us(30), ms(i)); // costly: 30 µs per 4 KiB
    expect(g.costly).toBe(1);
    expect(g.admit(4096, ms(40))).toBe(false); // QD32: the loop serves the others meanwhile
    alone = true;
    expect(g.admit(4096, ms(41))).toBe(true); // QD1: the pool's wake-ups would buy nothing
    // Blocked (two slow writes in a row): the pool even for the only request.
    g.record(4096, ms(2), ms(42));
    g.record(4096, ms(2), ms(43));
    expect(g.misses).toBe(1);
    expect(g.admit(4096, ms(44))).toBe(false);
    // Back-offs in a row double whatever their cause: 50 ms (costly), then 100 ms.
    expect(g.admit(4096, ms(142))).toBe(false);
    expect(g.admit(4096, ms(143))).toBe(true);
  });

  it('the default sense of "alone" is the process-wide count the servers keep', () => {
    const g = new InlineIoGate('auto', null);
    for (let i = 0; i < 32; i++) g.record(4096, us(30), ms(i));
    const saved = workInFlight.requests;
    try {
      workInFlight.requests = 1;
      expect(g.admit(4096, ms(40))).toBe(true);
      workInFlight.requests = 2;
      expect(g.admit(4096, ms(40))).toBe(false);
    } finally {
      workInFlight.requests = saved;
    }
  });

  it('writes up to 1 MiB run inline while no Unix-socket client has a request in flight', () => {
    const writes = new InlineIoGates().writes;
    const saved = { ...workInFlight };
    try {
      Object.assign(workInFlight, { requests: 8, overUnixSockets: 0 }); // TCP clients only
      expect(writeInlineLimit()).toBe(1024 * 1024);
      expect(writes.admit(1024 * 1024, 0n)).toBe(true);
      expect(writes.admit(1024 * 1024 + 512, 0n)).toBe(false);
      workInFlight.overUnixSockets = 1; // one waits on its small socket buffer
      expect(writes.admit(1024 * 1024, 0n)).toBe(false);
      expect(writes.admit(256 * 1024, 0n)).toBe(true);
      // Reads stay at 256 KiB whoever waits.
      workInFlight.overUnixSockets = 0;
      const reads = new InlineIoGates().reads;
      expect(reads.admit(512 * 1024, 0n)).toBe(false);
      expect(new InlineIoGate('auto', null, { maxInlineBytes: () => 4096 }).admit(8192, 0n)).toBe(false);
    } finally {
      Object.assign(workInFlight, saved);
    }
  });

  it('never and always ignore the clock', () => {
    const never = new InlineIoGate('never', () => 0);
    expect(never.admit(512, 0n)).toBe(false);
    let blocks = 0;
    const always = new InlineIoGate('always', () => blocks);
    blocks = 1;
    always.record(4096, ms(100), 0n);
    expect(always.admit(64 * 1024 * 1024, 1n)).toBe(true);
  });
});

describe('fdIo.pread', () => {
  let dir: string;
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(['always', 'never'] as const)('reads the same bytes with inline reads %s, and rejects a bad descriptor', async (mode) => {
    dir = await mkdtemp(join(tmpdir(), 'iomapd-fdio-'));
    const path = join(dir, 'f');
    const data = Buffer.alloc(64 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    await writeFile(path, data);
    const inlineReads = new InlineIoGates({ reads: mode }).reads;
    const before = { inline: inlineReads.inline, pooled: inlineReads.pooled };
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(5000);
      expect(await fdIo.pread(inlineReads, fd, buf, 100, 4096, 12_345)).toBe(4096);
      expect(buf.subarray(100, 4196).equals(data.subarray(12_345, 12_345 + 4096))).toBe(true);
      expect(await fdIo.pread(inlineReads, fd, buf, 0, 4096, data.length - 10)).toBe(10);
    } finally {
      closeSync(fd);
    }
    await expect(fdIo.pread(inlineReads, fd, Buffer.alloc(512), 0, 512, 0)).rejects.toMatchObject({ code: 'EBADF' });
    const counted = mode === 'always' ? inlineReads.inline - before.inline : inlineReads.pooled - before.pooled;
    expect(counted).toBe(3);
  });

  it.each(['always', 'never'] as const)('fdIo.pwrite writes the same bytes with inline writes %s', async (mode) => {
    dir = await mkdtemp(join(tmpdir(), 'iomapd-fdio-'));
    const path = join(dir, 'f');
    await writeFile(path, Buffer.alloc(16 * 1024));
    const inlineWrites = new InlineIoGates({ writes: mode }).writes;
    const before = { inline: inlineWrites.inline, pooled: inlineWrites.pooled };
    const fd = openSync(path, 'r+');
    try {
      const data = Buffer.alloc(6000, 0x3c);
      expect(await fdIo.pwrite(inlineWrites, fd, data, 1000, 4096, 8192)).toBe(4096);
    } finally {
      closeSync(fd);
    }
    await expect(fdIo.pwrite(inlineWrites, fd, Buffer.alloc(512), 0, 512, 0)).rejects.toMatchObject({ code: 'EBADF' });
    const back = await readFile(path);
    expect(back.subarray(8192, 8192 + 4096).every((b) => b === 0x3c)).toBe(true);
    expect(back.subarray(0, 8192).every((b) => b === 0)).toBe(true);
    const counted = mode === 'always' ? inlineWrites.inline - before.inline : inlineWrites.pooled - before.pooled;
    expect(counted).toBe(2);
  });
});
