// `iomapd diff IMAGE FROM TO`: the byte ranges where snapshot FROM and TO (a later snapshot of its
// lineage, or the live volume) may differ. Parsing and printing only; the diff is src/fs/diff.ts.
// It opens an idle image read-only; a served image answers the same question over NBD through the
// export's qemu:dirty-bitmap:FROM context (docs/BACKUP.md).
import type { Command } from 'commander';
import { type DiffRange, diffVolumes, rangeBytes } from '../fs/diff.ts';
import { openImageFile } from '../fs/image-file.ts';
import type { ImageStore } from '../fs/image-store.ts';
import { IomapdError, isIomapdError } from '../util/errors.ts';
import { reportAndExit } from './report.ts';

/** What `diff --json` prints. */
export interface DiffReport {
  from: string;
  to: string;
  /** TO's size: the ranges cover [0, size). */
  size: number;
  /** The allocation block: changes are found per block. */
  granularity: number;
  changedBytes: number;
  ranges: DiffRange[];
}

/** Opens an idle image read-only; LOCKED names the NBD route when a daemon holds it. */
export async function openIdleImage(image: string, readOnly: boolean, served: string): Promise<ImageStore> {
  try {
    return await openImageFile(image, { readOnly });
  } catch (err) {
    if (isIomapdError(err, 'LOCKED')) throw new IomapdError('LOCKED', `${(err as Error).message}; ${served}`, { cause: err });
    throw err;
  }
}

export async function diffReport(store: ImageStore, from: string, to: string): Promise<DiffReport> {
  const ranges = await diffVolumes(store, from, to);
  return { from, to, size: store.volumes.facts(to).size, granularity: store.blockSize, changedBytes: rangeBytes(ranges), ranges };
}

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
        const store = await openIdleImage(image, true, `while it is served, read the change from the export of ${to}: nbdinfo --map=qemu:dirty-bitmap:${from}`);
        const report = await diffReport(store, from, to).finally(() => store.close());
        if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else for (const r of report.ranges) process.stdout.write(`${r.offset}\t${r.length}\t${r.zero ? 'zero' : 'data'}\n`);
      } catch (err) {
        reportAndExit(err);
      }
    });
}
