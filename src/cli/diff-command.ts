// `iomapd diff IMAGE FROM TO`: the byte ranges where snapshot FROM and TO (a later snapshot of its
// lineage, or the live volume) may differ. Parsing and printing only; the diff is src/fs/diff.ts,
// reached directly on an idle image or through the control channel of the daemon serving it.
import type { Command } from 'commander';
import { openAdmin } from '../control/open-admin.ts';
import { reportAndExit } from './report.ts';

export function registerDiff(program: Command): void {
  program
    .command('diff')
    .description('print the byte ranges where snapshot FROM and TO (a later snapshot of its lineage, or the live volume) may differ')
    .argument('<image>')
    .argument('<from>', 'a snapshot')
    .argument('<to>', 'a later snapshot of the same lineage, or the live volume')
    .option('--json', 'print JSON: {from, to, size, granularity, changedBytes, ranges: [{offset, length, zero}]}')
    .action(async (image: string, from: string, to: string, o: { json?: boolean }) => {
      try {
        const admin = await openAdmin(image, true);
        const report = await admin.diff(from, to).finally(() => admin.close());
        if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else for (const r of report.ranges) process.stdout.write(`${r.offset}\t${r.length}\t${r.zero ? 'zero' : 'data'}\n`);
      } catch (err) {
        reportAndExit(err);
      }
    });
}
