// The soak's protocol fuzz (issue 13 item 4): the hostile clients of test/crash/fuzz.test.ts, many
// at once, until a number of NBD messages has been sent (10^6 by default), against one child
// daemon serving an image. Every reply a listening client got is judged; between batches the
// daemon must be alive, a well-behaved connection must round-trip a write and a read, and RSS is
// sampled. At the end: RSS bounded, a clean stop, the image checks clean.
//
// Usage: node test/support/soak/fuzz-soak.ts [PACKETS] [SEED] [CONCURRENCY]
// Prints one JSON line of figures last; exits 1 on any violation.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { checkImageFile } from '../../../src/fs/image-file.ts';
import { Daemon, runCli } from '../daemon.ts';
import { TestClient } from '../test-client.ts';
import { pattern, sectorValue } from '../crash/sector-model.ts';
import { caseArb, judge, MiB, packetsOf, play, VOLUME_BYTES } from '../fuzz/hostile-cases.ts';

const BATCH = 200;

export interface FuzzSoakResult {
  packets: number;
  cases: number;
  listened: number;
  /** Connects refused with EAGAIN (listen backlog full). */
  refused: number;
  seconds: number;
  violations: string[];
  rssMiB: { start: number; peak: number; end: number; samples: number[] };
}

export async function runFuzzSoak(target: number, seed: number, concurrency: number, log: (l: string) => void): Promise<FuzzSoakResult> {
  const dir = await mkdtemp(join(tmpdir(), 'iomapd-fuzz-soak-'));
  const image = join(dir, 'image.iomapd');
  const socket = join(dir, 'nbd.sock');
  const violations: string[] = [];
  const samples: number[] = [];
  let daemon: Daemon | null = null;
  let steady: TestClient | null = null;
  let packets = 0;
  let cases = 0;
  let listened = 0;
  let refused = 0;
  const started = Date.now();
  try {
    const created = await runCli(['create', image, '--size', `${VOLUME_BYTES}`, '--capacity', '16M']);
    if (created.code !== 0) throw new Error(`create failed: ${created.stderr}`);
    daemon = await Daemon.start([image, '--socket', socket, '--handshake-timeout', '2']);
    steady = await TestClient.open(socket, 'default');
    samples.push(await daemon.rss());
    let batchNo = 0;
    while (packets < target && violations.length === 0) {
      const batch = fc.sample(caseArb, { seed: seed + batchNo, numRuns: BATCH });
      batchNo++;
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < batch.length) {
          const c = batch[next++]!;
          const reply = await play(socket, c).catch((err: NodeJS.ErrnoException) => {
            // A full listen backlog refuses a Unix connect at once (EAGAIN): the server is busy,
            // not wrong. Counted; any other connect failure is a violation.
            if (err.code === 'EAGAIN') refused++;
            else violations.push(`batch ${batchNo}: connect failed: ${err.message}`);
            return 'refused' as const;
          });
          if (reply === 'refused') continue;
          cases++;
          packets += packetsOf(c);
          if (reply === null) continue;
          listened++;
          const problem = judge(c, reply);
          if (problem) violations.push(`batch ${batchNo}: ${problem}`);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      if (!daemon.alive) {
        violations.push(`the daemon died:\n${daemon.output()}`);
        break;
      }
      await roundTrip(steady, batchNo).catch((e: Error) => violations.push(`batch ${batchNo}: ${e.message}`));
      samples.push(await daemon.rss());
      if (batchNo % 50 === 0) log(`fuzz soak: ${packets} packets, ${cases} cases, RSS ${mib(samples.at(-1)!)} MiB`);
    }
    await new Promise((r) => setTimeout(r, 300));
    samples.push(await daemon.rss());
    await steady.close();
    steady = null;
    const stopped = await daemon.stop();
    daemon = null;
    if (stopped.code !== 0) violations.push(`daemon stop exited ${stopped.code}`);
    const check = await checkImageFile(image, false);
    if (check.errors.length > 0) violations.push(`check: ${check.errors.join('; ')}`);
    const start = samples[0]!;
    const peak = Math.max(...samples);
    if (peak > start + 256 * MiB) violations.push(`RSS peak ${mib(peak)} MiB against ${mib(start)} MiB at start`);
    return {
      packets,
      cases,
      listened,
      refused,
      seconds: Math.round((Date.now() - started) / 1000),
      violations,
      rssMiB: { start: mib(start), peak: mib(peak), end: mib(samples.at(-1)!), samples: samples.filter((_, i) => i % 25 === 0).map(mib) },
    };
  } finally {
    await steady?.close().catch(() => {});
    await daemon?.kill().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}

async function roundTrip(client: TestClient, n: number): Promise<void> {
  const sector = n % (VOLUME_BYTES / 512);
  const value = 0x20000 + n;
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('steady connection hung')), 10_000);
  });
  try {
    await Promise.race([
      (async () => {
        await client.writeAt(sector * 512, pattern(1, sector, value));
        const back = await client.readAt(sector * 512, 512);
        if (sectorValue(back, 0, sector) !== value) throw new Error(`steady connection read back ${sectorValue(back, 0, sector)}`);
      })(),
      hung,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const mib = (n: number): number => Math.round((n / MiB) * 10) / 10;

if (import.meta.main) {
  const target = Number(process.argv[2] ?? 1_000_000);
  const seed = Number(process.argv[3] ?? 4096);
  const concurrency = Number(process.argv[4] ?? 16);
  const r = await runFuzzSoak(target, seed, concurrency, (l) => console.log(l));
  console.log(`fuzz soak: ${r.packets} packets in ${r.cases} cases (${r.listened} listened to, ${r.refused} connects refused by a full backlog), ${r.seconds} s, ${r.violations.length} violations; RSS ${r.rssMiB.start} -> peak ${r.rssMiB.peak} -> end ${r.rssMiB.end} MiB`);
  for (const v of r.violations.slice(0, 20)) console.log(`  ${v}`);
  console.log(JSON.stringify({ fuzz: r }));
  process.exitCode = r.violations.length === 0 ? 0 : 1;
}
