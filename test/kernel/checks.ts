// What the kernel scenarios check after a guest run: the guest passed, the kernel logged no
// trouble, every connection was counted, the guest's patterns are on the host; failure messages
// carrying the tails of the guest console (which ends with the kernel log) and of the daemon's
// log; and readings of `iomapd map` output.
import { createHash } from 'node:crypto';
import { tail, totals, type KernelDaemon, type MapExtent } from './kernel-daemon.ts';
import { CLOSE_LOG_MS, type GuestRun } from './rig.ts';

/** A kernel message that fails a run whatever the script's status. */
const KERNEL_TROUBLE = /BUG:|Oops|Call Trace|Kernel panic|general protection fault|WARNING: CPU:|INFO: task .* blocked/;

/** The type of every byte of [offset, offset+length) in a map, as a set of types. */
export function typesIn(map: readonly MapExtent[], offset: number, length: number): Set<MapExtent['type']> {
  const types = new Set<MapExtent['type']>();
  let covered = 0;
  for (const e of map) {
    const s = Math.max(e.offset, offset);
    const t = Math.min(e.offset + e.length, offset + length);
    if (s < t) {
      types.add(e.type);
      covered += t - s;
    }
  }
  if (covered !== length) throw new Error(`the map covers ${covered} of the ${length} bytes at ${offset}`);
  return types;
}

/** Bytes of a map with the given type (and, if given, sharing). */
export function bytesOf(map: readonly MapExtent[], type: MapExtent['type'], shared?: boolean): number {
  return map.filter((e) => e.type === type && (shared === undefined || e.shared === shared)).reduce((n, e) => n + e.length, 0);
}

/** A failure message: what went wrong, then the console tail and the daemon log tail. */
export function explain(run: GuestRun, daemon: KernelDaemon, what: string): string {
  return [
    `${what} (scenario "${run.name}", rig status ${run.status}, ${(run.wallMs / 1000).toFixed(1)} s)`,
    `--- guest console (tail; all of it: ${run.consoleLog}) ---`,
    tail(run.console),
    `--- iomapd (${daemon.name}, ${daemon.backend}) ---`,
    tail(daemon.output(), 40),
  ].join('\n');
}

/**
 * Throws unless every host step succeeded, the guest script passed, the kernel logged no oops,
 * BUG, warning or hung task, the daemon is still running, and every connection it negotiated was
 * closed and counted.
 */
export function assertGuestPassed(run: GuestRun, daemon: KernelDaemon): void {
  const problems: string[] = [];
  for (const h of run.hostSteps) if (h.error !== undefined) problems.push(`host step "${h.name}" failed: ${h.error}`);
  if (run.status !== 0) {
    const reason = /^RIG-FAIL: (.*)$/m.exec(run.console)?.[1];
    problems.push(
      run.status === 124
        ? 'the guest timed out (hung?): its blocked tasks are in the kernel log below'
        : run.status === 125
          ? 'the guest printed no exit status (crash, panic or setup failure)'
          : run.status === 126
            ? 'the guest script passed but the kernel logged trouble'
            : `the guest script failed with status ${run.status}${reason === undefined ? '' : `: ${reason}`}`,
    );
  }
  const trouble = run.console.split('\n').find((l) => KERNEL_TROUBLE.test(l));
  if (trouble !== undefined) problems.push(`the guest kernel logged: ${trouble.trim()}`);
  const exit = daemon.exited();
  if (exit !== null) problems.push(`iomapd died during the run (code ${exit.code}, signal ${exit.signal})`);
  if (problems.length === 0 && run.connections.length < daemon.negotiated().length) {
    problems.push(`iomapd negotiated ${daemon.negotiated().length} connections but logged only ${run.connections.length} as closed within ${CLOSE_LOG_MS} ms`);
  }
  if (problems.length > 0) throw new Error(explain(run, daemon, problems.join('; ')));
}

/**
 * Stops the daemon (an image must then check clean) and compares each pattern the guest wrote
 * with the same bytes on the host: in the raw file, or in the image's `default` volume read
 * through its extent map from the image file.
 */
export async function checkPatternsOnHost(run: GuestRun, daemon: KernelDaemon): Promise<void> {
  await daemon.stop();
  const reader = await daemon.hostReader();
  try {
    for (const p of run.patterns) {
      const digest = createHash('sha256')
        .update(await reader.read(p.offset, p.length))
        .digest('hex');
      if (digest !== p.sha256) {
        throw new Error(explain(run, daemon, `pattern ${p.name} (${p.length} bytes at ${p.offset}) differs on the host (${daemon.backend === 'raw' ? 'raw file' : 'image volume default'})`));
      }
    }
  } finally {
    await reader.close();
  }
}

/** One line per connection and the totals, for the test output. */
export function describeCounts(run: GuestRun): string {
  const steps = run.steps.map((s, i) => {
    const next = run.steps[i + 1];
    return next === undefined ? `${s.what}` : `${s.what} ${(next.at - s.at).toFixed(1)}s`;
  });
  return [
    `[kernel] ${run.name}: ${(run.wallMs / 1000).toFixed(1)} s wall`,
    ...run.connections.map((c) => `  conn ${c.conn} (${c.export === '' ? 'raw file' : c.export}, ${c.reason}): ${JSON.stringify(c.requests)}`),
    `  total: ${JSON.stringify(totals(run.connections))}`,
    `  steps: ${steps.join(' | ')}`,
    ...(run.hostSteps.length === 0 ? [] : [`  host steps: ${run.hostSteps.map((h) => `${h.name} ${(h.ms / 1000).toFixed(1)}s${h.error === undefined ? '' : ' FAILED'}`).join(' | ')}`]),
  ].join('\n');
}
