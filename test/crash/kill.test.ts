// Kill campaign in CI (issue 7 item 1): IOMAPD_KILL_ITERATIONS (default 200) SIGKILLs of a daemon
// under a verifying multi-connection workload with snapshots and clones; zero violations allowed.
// The campaign itself is test/support/crash/kill-campaign.ts (also runnable by hand, any count).
import { expect, it } from 'vitest';
import { formatTally, runKillCampaign } from '../support/crash/kill-campaign.ts';

const ITERATIONS = Number(process.env.IOMAPD_KILL_ITERATIONS ?? 200);
const SEED = Number(process.env.IOMAPD_KILL_SEED ?? 20_260_707);

it(`${ITERATIONS} SIGKILLs under load lose no flushed or FUA write, expose nothing stale, and check clean`, async () => {
  const tally = await runKillCampaign({ iterations: ITERATIONS, seed: SEED });
  console.log(formatTally(tally));
  expect(tally.violations).toEqual([]);
  expect(tally.iterations).toBe(ITERATIONS);
  expect(tally.writes).toBeGreaterThan(ITERATIONS);
}, 900_000);
