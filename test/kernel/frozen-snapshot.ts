// Host side of guest/snapshot.sh, shared by scenario 7 (a file image) and scenario 10 (an image in
// a bucket): while the guest holds ext4 frozen, snapshot and clone the origin through the control
// channel and check that the snapshot maps the filesystem's data, all of it shared with the origin;
// after the guest is done, check the connections and the copy-on-write counters.
import { expect } from 'vitest';
import { assertGuestPassed, bytesOf, describeCounts, explain } from './checks.ts';
import { type KernelDaemon, totals } from './kernel-daemon.ts';
import { runGuest } from './rig.ts';

const MiB = 1 << 20;
const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

/**
 * Runs snapshot.sh against the daemon's `default` volume, attached with NBD_OPTS `nbdOpts`
 * (`originConnections` connections per attach), the clone on one connection.
 */
export async function frozenSnapshotScenario(daemon: KernelDaemon, name: string, nbdOpts: string, originConnections: number, timeoutSec: number): Promise<void> {
  const notes: string[] = [];
  const run = await runGuest({
    name,
    scenario: 'snapshot.sh',
    env: { NBD_OPTS: nbdOpts, CLONE: 'clone' },
    daemon,
    timeoutSec,
    hostSteps: {
      // The filesystem is frozen (its data and a clean journal are on the device).
      async frozen() {
        const before = await daemon.info();
        await daemon.cli(['snapshot', daemon.image, 'default', 'frozen']);
        await daemon.cli(['clone', daemon.image, 'frozen', 'clone']);
        const snap = await daemon.map('frozen');
        const origin = await daemon.map('default');
        const after = await daemon.info();
        const mapped = bytesOf(snap, 'mapped');
        if (mapped < 4 * MiB) throw new Error(`the snapshot maps only ${mapped} bytes`);
        if (bytesOf(snap, 'mapped', false) > 0) throw new Error('the snapshot has unshared mapped extents right after it was taken');
        if (bytesOf(origin, 'mapped', false) > 0) throw new Error('the origin has unshared mapped extents right after the snapshot');
        notes.push(
          `  snapshot: ${mib(mapped)} mapped, all shared; free blocks ${before.freeBlocks} before, ${after.freeBlocks} after snapshot and clone; volumes ${after.volumes.map((v) => v.name).join(', ')}`,
        );
      },
    },
  });
  const check = (ok: boolean, what: string) => {
    if (!ok) throw new Error(explain(run, daemon, what));
  };
  assertGuestPassed(run, daemon);
  // Counters of the running daemon, before it stops.
  const stats = await daemon.stats();
  console.log(describeCounts(run));
  const counters = (volume: string) => stats.exports.find((e) => e.name === volume)?.counters ?? {};
  const origin = counters('default');
  const clone = counters('clone');
  notes.push(
    `  stats: default cowCopies ${origin.cowCopies}, copyUpBytes ${origin.copyUpBytes}, flushes ${origin.flushes}, journalCommits ${origin.journalCommits}; clone written ${mib(clone.clientBytesWritten ?? 0)}, read ${mib(clone.clientBytesRead ?? 0)}, cowCopies ${clone.cowCopies}`,
  );
  console.log(notes.join('\n'));
  check(run.hostSteps.length === 1, 'expected the host step "frozen"');
  check(run.connections.length === originConnections + 1, `expected ${originConnections + 1} connections, got ${run.connections.length}`);
  // iomapd logs the volume a connection reached: "default" for the default export "".
  const originConns = run.connections.filter((c) => c.export === 'default');
  const cloneConns = run.connections.filter((c) => c.export === 'clone');
  check(originConns.length === originConnections && cloneConns.length === 1, `expected ${originConnections} connection(s) to "default" and one to "clone"`);
  const sum = totals(originConns);
  expect(sum.FLUSH ?? 0).toBeGreaterThan(0);
  expect(sum.FUA ?? 0).toBeGreaterThan(0);
  expect(cloneConns[0]!.requests.WRITE ?? 0, 'the guest wrote to the clone').toBeGreaterThan(0);
  expect(cloneConns[0]!.requests.FLUSH ?? 0, 'FLUSH on the clone').toBeGreaterThan(0);
  // Writing over blocks the snapshot shares copies them.
  expect(origin.cowCopies ?? 0, 'copy-on-write on the origin after the snapshot').toBeGreaterThan(0);
  expect(clone.cowCopies ?? 0, 'copy-on-write on the clone').toBeGreaterThan(0);
}
