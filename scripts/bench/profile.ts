// Profiles iomapd under one fio job of the matrix: serves the benchmark data with
// `node --cpu-prof`, runs the job, stops the server and prints where the main thread's time went,
// with the server's CPU time per request. Needs the datasets of `npm run bench` (bench/tmp).
//   node scripts/bench/profile.ts [JOB] [iomapd-image|iomapd-raw] [unix|tcp]
// BENCH_RUNTIME / BENCH_RAMP set the job length (default 5 s + 1 s); BENCH_PROFILE=0 measures
// without the profiler (its sampling costs a little CPU).
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig, type ServerName, type Transport } from './config.ts';
import { prepareDatasets } from './datasets.ts';
import { FIO_JOBS, runFio } from './fio-jobs.ts';
import { summarise } from './profile-summary.ts';
import { startServer } from './servers.ts';
import { cpuSeconds, equalisePageCache, loadAverage, peakRssMiB, sleep } from './system.ts';

const cfg = loadConfig();
const jobName = process.argv[2] ?? 'randread-4k-qd32';
const server = (process.argv[3] ?? 'iomapd-image') as ServerName;
const transport = (process.argv[4] ?? 'unix') as Transport;
const job = FIO_JOBS.find((j) => j.name === jobName);
if (!job) throw new Error(`unknown job ${jobName}; known: ${FIO_JOBS.map((j) => j.name).join(', ')}`);
const runtime = Number(process.env.BENCH_RUNTIME ?? 5);
const ramp = Number(process.env.BENCH_RAMP ?? 1);
const profiling = process.env.BENCH_PROFILE !== '0';

const work = join(cfg.dir, 'work');
const logDir = join(cfg.dir, 'logs', 'profile');
const profDir = join(cfg.dir, 'profiles');
await mkdir(work, { recursive: true });
await mkdir(logDir, { recursive: true });
await rm(profDir, { recursive: true, force: true });
await mkdir(profDir, { recursive: true });
const data = (await prepareDatasets(cfg.dir, logDir, cfg.size)).main;
await equalisePageCache([server === 'iomapd-image' ? data.image : data.raw], false);
const env = profiling ? { ...process.env, NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}` } : process.env;
const load = loadAverage()[0];
const s = await startServer(server, transport, data, { dir: work, logDir, env });
let cpu = 0;
let res;
let rss = 0;
try {
  const fio = runFio(job, s.uri, runtime, ramp, work);
  await sleep(ramp * 1000 + 50);
  const c0 = await cpuSeconds(s.pid);
  res = await fio;
  cpu = (await cpuSeconds(s.pid)) - c0;
  rss = await peakRssMiB(s.pid);
} finally {
  await s.stop();
}
const perReq = (cpu * 1e6) / res.requests;
console.log(
  `${job.name} ${server} ${transport}: ${Math.round(res.value).toLocaleString('en-US')} ${job.metric}, ` +
    `server CPU ${perReq.toFixed(1)} µs/request, mean latency ${res.latMeanUs.toFixed(0)} µs, peak RSS ${rss.toFixed(0)} MiB, load ${load}`,
);
if (profiling) {
  const files = (await readdir(profDir)).filter((f) => f.endsWith('.cpuprofile'));
  for (const f of files) {
    const sum = summarise(JSON.parse(await readFile(join(profDir, f), 'utf8')), Number(process.env.PROFILE_TOP ?? 30));
    console.log(`\n${f}: sampled ${sum.totalMs.toFixed(0)} ms of the main thread (whole process lifetime), idle ${sum.idlePct.toFixed(1)}%`);
    for (const r of sum.byFunction) console.log(`${r.pct.toFixed(1).padStart(6)}%  ${r.name}`);
    console.log('  by file:');
    for (const r of sum.byFile.slice(0, 15)) console.log(`${r.pct.toFixed(1).padStart(6)}%  ${r.name}`);
  }
}
