// `iomapd check IMAGE [--repair]`: an idle image is opened and checked here (src/fs/image-file.ts);
// a served image is checked by its daemon through the control channel (the check op), read-only,
// while it keeps serving. Repair rewrites the metadata, which only an idle image allows.
// Output and exit status are the same either way: notes, errors, a summary line; exit 2 on damage.
import type { Command } from 'commander';
import { openDaemon } from '../control/open-admin.ts';
import { type ImageCheckResult, checkImageFile } from '../fs/image-file.ts';
import { isObjectImageName } from '../fs/image-name.ts';
import { ImageLock } from '../fs/lock.ts';
import { IomapdError } from '../util/errors.ts';
import { checkObjectImageCommand } from './object-commands.ts';
import { progressMode, startProgress } from './progress.ts';
import { reportAndExit } from './report.ts';

/** What `iomapd check` prints on stdout for a report (text form). */
export function checkText(r: ImageCheckResult): string {
  const lines = [...r.notes.map((n) => `note: ${n}`), ...r.errors.map((e) => `error: ${e}`)];
  const verdict = r.errors.length === 0 ? 'clean' : `${r.errors.length} problem(s)`;
  lines.push(`${verdict}: ${r.volumes} volumes, ${r.extents} extents, ${r.usedBlocks} used and ${r.freeBlocks} free blocks${r.repaired ? ' (repaired)' : ''}`);
  return `${lines.join('\n')}\n`;
}

/** Checks IMAGE wherever it is held: here when idle, by the serving daemon otherwise. */
export async function runCheck(image: string, repair: boolean, progress: boolean | undefined): Promise<ImageCheckResult> {
  const pid = await ImageLock.holder(image);
  if (pid !== null) {
    if (repair) {
      throw new IomapdError('LOCKED', `${image} is served by process ${pid}: --repair rewrites the metadata and needs an idle image; stop the daemon first (iomapd check without --repair checks a served image)`);
    }
    const admin = await openDaemon(image, 'checking a served image');
    return admin.check().finally(() => admin.close());
  }
  let bar: ReturnType<typeof startProgress> | null = null;
  return checkImageFile(image, repair, (done, total) => {
    bar ??= startProgress('check', total, 'items', progressMode(progress));
    bar.update(done);
  }).finally(() => bar?.stop());
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('verify every invariant of an image, idle or served (read-only); change nothing unless --repair (idle images only)')
    .argument('<image>')
    .option('--repair', 'rebuild reference counts and free space and rewrite the metadata')
    .option('--json', 'print JSON')
    .option('--progress', 'draw a progress bar (extents checked) on stderr even when it is not a terminal')
    .option('--no-progress', 'never draw a progress bar')
    .action(async (image: string, o: { repair?: boolean; json?: boolean; progress?: boolean }) => {
      if (isObjectImageName(image)) {
        // A bucket image is checked from what the bucket holds, served or not (docs/OBJECT-STORE.md).
        await checkObjectImageCommand(image, o).catch(reportAndExit);
        return;
      }
      let r: ImageCheckResult;
      try {
        r = await runCheck(image, !!o.repair, o.progress);
      } catch (err) {
        reportAndExit(err);
      }
      process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : checkText(r));
      if (r.errors.length > 0) {
        process.stderr.write(`iomapd: CORRUPT: ${image} has ${r.errors.length} problem(s)\n`);
        process.exit(2);
      }
    });
}
