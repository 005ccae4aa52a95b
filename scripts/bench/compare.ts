// Before/after on one fio job: runs it against two iomapd launchers (e.g. a checkout of the last
// commit and this tree), alternating A, B, A, B ..., and prints median throughput and server CPU
// per request for each. Needs the datasets of `npm run bench`.
//   node scripts/bench/compare.ts A_LAUNCHER B_LAUNCHER [JOB] [iomapd-image|iomapd-raw] [unix|tcp] [N]
// BENCH_RUNTIME / BENCH_RAMP set the job length (default 5 s + 1 s). COMPARE_JSON=PATH also writes
// every run and the medians there (bench/results/compare/ keeps the recorded comparisons).
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { loadConfig, type ServerName, type Transport } from './config.ts';
import { prepareDatasets } from './datasets.ts';
import { FIO_JOBS, runFio } from './fio-jobs.ts';
import { median } from './results.ts';
import { startServer } from './servers.ts';
import { cpuSeconds, equalisePageCache, loadAverage, sleep } from './system.ts';

const [a, b] = [process.argv[2], process.argv[3]];
if (!a || !b) throw new Error('usage: compare.ts A_LAUNCHER B_LAUNCHER [JOB] [SERVER] [TRANSPORT] [N]');
const job = FIO_JOBS.find((j) => j.name === (process.argv[4] ?? 'randread-4k-qd32'));
if (!job) throw new Error('unknown job');
const server = (process.argv[5] ?? 'iomapd-raw') as ServerName;
const transport = (process.argv[6] ?? 'unix') as Transport;
const n = Number(process.argv[7] ?? 5);
const runtime = Number(process.env.BENCH_RUNTIME ?? 5);
const ramp = Number(process.env.BENCH_RAMP ?? 1);

const cfg = loadConfig();
const work = join(cfg.dir, 'work');
const logDir = join(cfg.dir, 'logs', 'compare');
await mkdir(work, { recursive: true });
await mkdir(logDir, { recursive: true });
const data = (await prepareDatasets(cfg.dir, logDir, cfg.size)).main;
const results: Record<string, { value: number[]; cpu: number[]; load: number[] }> = { A: { value: [], cpu: [], load: [] }, B: { value: [], cpu: [], load: [] } };
for (let i = 0; i < n; i++) {
  for (const [label, launcher] of i % 2 === 0 ? [['A', a], ['B', b]] : [['B', b], ['A', a]]) {
    await equalisePageCache([server === 'iomapd-image' ? data.image : data.raw], false);
    const s = await startServer(server, transport, data, { dir: work, logDir, iomapd: launcher! });
    try {
      const fio = runFio(job, s.uri, runtime, ramp, work);
      await sleep(ramp * 1000 + 50);
      const c0 = await cpuSeconds(s.pid);
      const r = await fio;
      const cpu = ((await cpuSeconds(s.pid)) - c0) * 1e6 / r.requests;
      results[label!]!.value.push(r.value);
      results[label!]!.cpu.push(cpu);
      results[label!]!.load.push(loadAverage()[0]!);
      console.log(`${label} ${Math.round(r.value)} ${job.metric}, ${cpu.toFixed(1)} µs/request (load ${loadAverage()[0]})`);
    } finally {
      await s.stop();
    }
  }
}
for (const label of ['A', 'B'] as const) {
  const r = results[label]!;
  console.log(`${label}: median ${Math.round(median(r.value))} ${job.metric}, median ${median(r.cpu).toFixed(1)} µs/request  (${label === 'A' ? a : b})`);
}
console.log(`B/A throughput ${(median(results.B!.value) / median(results.A!.value)).toFixed(2)}x, CPU per request ${(median(results.B!.cpu) / median(results.A!.cpu)).toFixed(2)}x`);
const out = process.env.COMPARE_JSON;
if (out) {
  const summary = (label: 'A' | 'B') => ({ launcher: label === 'A' ? a : b, ...results[label]!, medianValue: median(results[label]!.value), medianCpuUs: median(results[label]!.cpu) });
  const ratio = { throughput: median(results.B!.value) / median(results.A!.value), cpuPerRequest: median(results.B!.cpu) / median(results.A!.cpu) };
  const record = { date: new Date().toISOString(), job: job.name, metric: job.metric, server, transport, runtime, ramp, alternations: n, A: summary('A'), B: summary('B'), ratio };
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(record, null, 2)}\n`);
}
