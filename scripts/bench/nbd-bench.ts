// `npm run bench`: iomapd (image store and raw file), nbdkit's file plugin and qemu-nbd serving the
// same 1 GiB, one server at a time, over a Unix socket and loopback TCP, through a fixed fio matrix
// repeated interleaved; then nbdcopy of a sparse export to null: and nbdinfo --map of a
// 65,536-extent export for every server. Writes bench/results/{results.json,results.md,ratios.svg}
// and the report section of docs/PERFORMANCE.md. Settings: scripts/bench/config.ts.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig, ROOT, serverRuns, TLS_SERVERS, type ServerName, type Transport } from './config.ts';
import { prepareDatasets } from './datasets.ts';
import { FIO_JOBS, runFio } from './fio-jobs.ts';
import { type AuxRun, type BenchResults, type JobRun, median } from './results.ts';
import { writeReport } from './report.ts';
import { type Dataset, type Running, startServer } from './servers.ts';
import { makeServerCertificates } from './tls-certificates.ts';
import { cpuJiffies, cpuSeconds, ensureTools, equalisePageCache, loadAverage, machineInfo, otherWorkCpus, peakRssMiB, run, sleep, stealPercent } from './system.ts';

const cfg = loadConfig();
ensureTools(cfg.install);
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const logDir = join(cfg.dir, 'logs', stamp);
const work = join(cfg.dir, 'work');
await mkdir(logDir, { recursive: true });
await mkdir(work, { recursive: true });
await mkdir(cfg.out, { recursive: true });

let current: Running | null = null;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: stopping the server under test`);
    void (current?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

const data = await prepareDatasets(cfg.dir, logDir, cfg.size);
const tlsDir = cfg.servers.some((s) => TLS_SERVERS.includes(s)) ? makeServerCertificates(join(logDir, 'tls')) : undefined;
const jobs = FIO_JOBS.filter((j) => cfg.jobFilter === null || cfg.jobFilter.includes(j.name));
const results: BenchResults = {
  version: 1,
  startedAt: new Date().toISOString(),
  finishedAt: '',
  quick: cfg.quick,
  settings: { runtime: cfg.runtime, ramp: cfg.ramp, reps: cfg.reps, dropCaches: cfg.dropCaches, servers: cfg.servers, transports: cfg.transports },
  machine: machineInfo(join(ROOT, 'node_modules/.bin/node')),
  load: { start: loadAverage(), end: [0, 0, 0] },
  jobs: jobs.map(({ name, title, metric, small }) => ({ name, title, metric, small })),
  runs: [],
  aux: [],
};
const partial = join(cfg.dir, 'partial-results.json');
const save = () => writeFile(partial, JSON.stringify(results, null, 1));

/** Interleaving: every server runs a job before any runs the next; the order flips each repetition. */
const order = (rep: number): ServerName[] => (rep % 2 === 0 ? cfg.servers : [...cfg.servers].reverse());
const fileFor = (server: ServerName, d: Dataset): string => (server === 'iomapd-image' || server === 'iomapd-image-tls' ? d.image : d.raw);

/** Load averages and other work's CPUs, taken by withServer just before the server starts. */
let jobLoad: [number, number, number] = [0, 0, 0];
let jobOtherCpus = 0;
/** Above this many CPUs of other work (median over the jobs), the run is flagged. */
const OTHER_WORK_LIMIT_CPUS = 0.2;

async function withServer<T>(server: ServerName, transport: Transport, d: Dataset, body: (s: Running) => Promise<T>): Promise<T> {
  await equalisePageCache([fileFor(server, d)], cfg.dropCaches);
  jobLoad = loadAverage();
  jobOtherCpus = await otherWorkCpus(500);
  current = await startServer(server, transport, d, { dir: work, logDir, ...(tlsDir === undefined ? {} : { tlsDir }) });
  try {
    return await body(current);
  } finally {
    await current.stop();
    current = null;
  }
}

const pairs = jobs.reduce((n, job) => n + cfg.servers.filter((s) => serverRuns(s, job.name)).length, 0);
const total = cfg.reps * pairs * cfg.transports.length;
let done = 0;
console.log(`fio matrix: ${total} runs of ${cfg.ramp + cfg.runtime} s (${pairs} job-server pairs x ${cfg.transports.length} transports x ${cfg.reps} repetitions; TLS servers run ${TLS_SERVERS.length > 0 ? 'their jobs only' : ''})`);
for (let rep = 1; rep <= cfg.reps; rep++) {
  for (const job of jobs) {
    for (const transport of cfg.transports) {
      for (const server of order(rep - 1)) {
        if (!serverRuns(server, job.name)) continue;
        const r = await withServer(server, transport, data.main, async (s) => {
          const fio = runFio(job, s.uri, cfg.runtime, cfg.ramp, work);
          // CPU is counted from the end of fio's ramp (approximately: fio connects within
          // milliseconds of starting) to its exit, the window its request counts cover.
          await sleep(cfg.ramp * 1000 + 50);
          const cpu0 = await cpuSeconds(s.pid);
          const machine0 = await cpuJiffies();
          const res = await fio;
          const cpuS = (await cpuSeconds(s.pid)) - cpu0;
          const stealPct = stealPercent(machine0, await cpuJiffies());
          return { res, cpuS, stealPct, rss: await peakRssMiB(s.pid) };
        });
        const row: JobRun = {
          rep,
          job: job.name,
          transport,
          server,
          ...r.res,
          cpuS: r.cpuS,
          cpuUsPerRequest: r.res.requests > 0 ? (r.cpuS * 1e6) / r.res.requests : 0,
          peakRssMiB: r.rss,
          load1: jobLoad[0],
          load: jobLoad,
          otherCpus: jobOtherCpus,
          stealPct: r.stealPct,
        };
        results.runs.push(row);
        await save();
        done++;
        const v = job.metric === 'iops' ? `${Math.round(row.value).toLocaleString('en-US')} IOPS` : `${row.value.toFixed(0)} MiB/s`;
        console.log(
          `[${String(done).padStart(3)}/${total}] rep ${rep} ${job.name.padEnd(26)} ${transport.padEnd(4)} ${server.padEnd(16)} ${v.padStart(14)}  ` +
            `cpu ${row.cpuUsPerRequest.toFixed(1)} µs/req  rss ${row.peakRssMiB.toFixed(0)} MiB  load ${jobLoad[0]}  other ${jobOtherCpus} CPUs  steal ${r.stealPct}%`,
        );
      }
    }
  }
}

if (cfg.aux) {
  for (let rep = 1; rep <= cfg.reps; rep++) {
    for (const test of ['nbdcopy-sparse', 'nbdinfo-map'] as const) {
      const d = test === 'nbdcopy-sparse' ? data.sparse : data.extents;
      for (const transport of cfg.transports) {
        for (const server of order(rep - 1)) {
          if (TLS_SERVERS.includes(server)) continue;
          const a = await withServer(server, transport, d, async (s) => {
            const cpu0 = await cpuSeconds(s.pid);
            const args = test === 'nbdcopy-sparse' ? [s.uri, 'null:'] : ['--map', s.uri];
            const cmd = test === 'nbdcopy-sparse' ? 'nbdcopy' : 'nbdinfo';
            const out = await run(cmd, args, { timeoutMs: 600_000 });
            if (out.code !== 0) throw new Error(`${cmd} against ${server} failed: ${out.stderr}`);
            const cpuS = (await cpuSeconds(s.pid)) - cpu0;
            const extents = test === 'nbdinfo-map' ? out.stdout.split('\n').filter((l) => l.trim() !== '').length : undefined;
            return { seconds: out.ms / 1000, extents, cpuS, rss: await peakRssMiB(s.pid) };
          });
          const row: AuxRun = { rep, test, transport, server, seconds: a.seconds, cpuS: a.cpuS, peakRssMiB: a.rss, ...(a.extents !== undefined ? { extents: a.extents } : {}) };
          results.aux.push(row);
          await save();
          console.log(`rep ${rep} ${test.padEnd(15)} ${transport.padEnd(4)} ${server.padEnd(12)} ${a.seconds.toFixed(3)} s${a.extents !== undefined ? ` (${a.extents} extents)` : ''}`);
        }
      }
    }
  }
}

results.finishedAt = new Date().toISOString();
results.load.end = loadAverage();
results.load.medianBeforeJobs = median(results.runs.map((x) => x.load1));
const others = results.runs.map((x) => x.otherCpus ?? 0);
results.load.otherCpusMedian = median(others);
results.load.otherCpusMax = Math.max(0, ...others);
results.load.high = results.load.otherCpusMedian > OTHER_WORK_LIMIT_CPUS;
if (results.load.high) console.warn(`\nWARNING: other work kept a median of ${results.load.otherCpusMedian} CPUs busy before jobs (limit ${OTHER_WORK_LIMIT_CPUS}): this run is not for the record.`);
await writeReport(results, cfg.out, cfg.updateDocs);
console.log(`\nresults: ${join(cfg.out, 'results.md')}${cfg.updateDocs ? ' and docs/PERFORMANCE.md' : ''}`);
