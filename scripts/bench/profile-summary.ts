// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function, and per file,
// as percentages of the sampled time. Run: node scripts/bench/profile-summary.ts FILE [TOP]
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  idlePct: number;
  byFunction: Array<{ name: string; pct: number }>;
  byFile: Array<{ name: string; pct: number }>;
}

export function summarise(profile: Profile, top = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fn = new Map<string, number>();
  const file = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    if (f.functionName === '(idle)') idle += us;
    const short = f.url.replace(/^file:\/\/.*?\/(src|node_modules)\//, '$1/').replace(/^node:/, 'node:');
    const name = `${f.functionName || '(anonymous)'} ${short ? `${short}:${f.lineNumber + 1}` : ''}`.trim();
    fn.set(name, (fn.get(name) ?? 0) + us);
    const fileName = short || f.functionName;
    file.set(fileName, (file.get(fileName) ?? 0) + us);
  }
  const rank = (m: Map<string, number>) =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({ name, pct: (100 * us) / total }));
  return { totalMs: total / 1000, idlePct: (100 * idle) / total, byFunction: rank(fn), byFile: rank(file) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const path = process.argv[2];
  if (!path) {
    console.error('usage: profile-summary.ts FILE.cpuprofile [TOP]');
    process.exit(2);
  }
  const s = summarise(JSON.parse(readFileSync(path, 'utf8')) as Profile, Number(process.argv[3] ?? 30));
  console.log(`sampled ${s.totalMs.toFixed(0)} ms, idle ${s.idlePct.toFixed(1)}%`);
  console.log('\nself time by function');
  for (const r of s.byFunction) console.log(`${r.pct.toFixed(1).padStart(6)}%  ${r.name}`);
  console.log('\nself time by file');
  for (const r of s.byFile) console.log(`${r.pct.toFixed(1).padStart(6)}%  ${r.name}`);
}
