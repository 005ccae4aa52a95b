// The kill campaign (test/support/crash/kill-campaign.ts) against an object-store image in the
// local Ceph: SIGKILLs under a verifying multi-connection workload with snapshots and clones, many
// landing between a segment upload and the journal/manifest update that references it (counted).
// Zero violations; the image checks clean after every kill. IOMAPD_S3_KILL_ITERATIONS (default 12,
// about a minute here) sets the count; the campaign also runs by hand with any count.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { formatTally, runKillCampaign } from '../support/crash/kill-campaign.ts';
import { type S3Fixture, s3Fixture } from '../interop/s3-harness.ts';

const ITERATIONS = Number(process.env.IOMAPD_S3_KILL_ITERATIONS ?? 12);
const SEED = Number(process.env.IOMAPD_KILL_SEED ?? 20_261_203);
let fx: S3Fixture | null = null;

beforeAll(async () => {
  fx = await s3Fixture('s3-kill');
}, 660_000);
afterAll(async () => {
  await fx?.close();
});

it(`${ITERATIONS} SIGKILLs of a daemon serving an object-store image lose no flushed write and leave it checking clean`, async (ctx) => {
  if (!fx) return ctx.skip();
  const tally = await runKillCampaign({
    iterations: ITERATIONS,
    seed: SEED,
    cliCheckEvery: 4,
    objectImage: { name: `s3://${fx.bucket}/kill/img`, env: fx.env(), serveArgs: ['--cache-size', '32M', '--gc-interval', '0'] },
  });
  console.log(formatTally(tally));
  expect(tally.violations).toEqual([]);
  expect(tally.iterations).toBe(ITERATIONS);
  expect(tally.flushes).toBeGreaterThan(ITERATIONS);
  expect(tally.writes).toBeGreaterThan(ITERATIONS);
}, 600_000);
