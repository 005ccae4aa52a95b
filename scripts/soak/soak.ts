// `npm run soak` (issue 13 item 4; not part of CI): the endurance run. Three campaigns run at the
// same time, each against its own child daemon, so they also load one another:
//   - the kill -9 campaign, SOAK_KILL_ITERATIONS (1,000) iterations;
//   - the protocol fuzz, SOAK_FUZZ_PACKETS (10^6) NBD messages from hostile clients;
//   - the 32-connection verified load, SOAK_LOAD_SECONDS (3,600) seconds, RSS sampled every second.
// Each campaign's own checks decide pass or fail (lost or stale data, a dead or hung daemon, RSS
// growth, an image that does not check clean). Output: bench/results/soak/<time>/ with each
// campaign's log and summary.json; the summary is printed last. Exit 1 if any campaign failed.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE = join(ROOT, 'node_modules', '.bin', 'node');
const VITEST = join(ROOT, 'node_modules', '.bin', 'vitest');

const killIterations = Number(process.env.SOAK_KILL_ITERATIONS ?? 1000);
const fuzzPackets = Number(process.env.SOAK_FUZZ_PACKETS ?? 1_000_000);
const loadSeconds = Number(process.env.SOAK_LOAD_SECONDS ?? 3600);

interface Campaign {
  name: string;
  command: string[];
  env?: Record<string, string>;
}

const campaigns: Campaign[] = [
  { name: 'kill', command: [NODE, 'test/support/crash/kill-campaign.ts', `${killIterations}`, `${Number(process.env.SOAK_SEED ?? 20_261_203)}`] },
  { name: 'fuzz', command: [NODE, 'test/support/soak/fuzz-soak.ts', `${fuzzPackets}`, `${Number(process.env.SOAK_SEED ?? 20_261_203)}`, '16'] },
  {
    name: 'load',
    command: [VITEST, 'run', 'test/crash/load.test.ts'],
    env: { IOMAPD_LOAD_SECONDS: `${loadSeconds}`, IOMAPD_LOAD_CONNECTIONS: '32' },
  },
];

const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const outDir = join(ROOT, 'bench', 'results', 'soak', stamp);
await mkdir(outDir, { recursive: true });
console.log(`soak: kill x${killIterations}, fuzz ${fuzzPackets} packets, load ${loadSeconds} s; logs in ${outDir}`);

const loads: number[][] = [];
const loadTimer = setInterval(() => loads.push(loadavg().map((l) => Math.round(l * 100) / 100)), 60_000);

const results = await Promise.all(campaigns.map(runCampaign));
clearInterval(loadTimer);

const summary = {
  started: stamp,
  machine: { cpus: cpus().length, node: process.version },
  settings: { killIterations, fuzzPackets, loadSeconds },
  loadAveragesPerMinute: loads,
  campaigns: results,
};
await writeFile(join(outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
for (const r of results) console.log(`\n[${r.name}] exit ${r.exit}, ${r.seconds} s\n${r.summary}`);
const failed = results.filter((r) => r.exit !== 0).map((r) => r.name);
console.log(failed.length === 0 ? '\nsoak: every campaign passed' : `\nsoak: FAILED: ${failed.join(', ')}`);
process.exitCode = failed.length === 0 ? 0 : 1;

async function runCampaign(c: Campaign): Promise<{ name: string; exit: number; seconds: number; summary: string }> {
  const logPath = join(outDir, `${c.name}.log`);
  const log = createWriteStream(logPath);
  const started = Date.now();
  // Three campaigns on two cores: a daemon may take far longer than CI's 20 s to start.
  const env = { IOMAPD_READY_TIMEOUT_MS: '180000', ...process.env, ...c.env };
  const child = spawn(c.command[0]!, c.command.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const exit = await new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  await new Promise<void>((resolve) => log.end(resolve));
  const text = await readFile(logPath, 'utf8');
  return { name: c.name, exit, seconds: Math.round((Date.now() - started) / 1000), summary: summaryOf(c.name, text) };
}

/** The lines of a campaign's log that carry its figures. */
function summaryOf(name: string, text: string): string {
  const lines = text.split('\n').map((l) => l.replace(/\x1b\[[0-9;]*m/g, ''));
  const wanted: Record<string, RegExp> = {
    kill: /^(kill campaign|  requests|  verified|  check|  )/,
    fuzz: /^(fuzz soak: \d+ packets in|  |\{"fuzz")/,
    load: /^(load: |.*(passed|failed|Tests))/,
  };
  return lines.filter((l) => wanted[name]!.test(l) && l.trim() !== '').slice(-12).join('\n');
}
