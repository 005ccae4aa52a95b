// What differs for an image in a bucket (`s3://BUCKET/PREFIX`): how `create` and `check` reach it,
// and `gc`, which only a bucket image needs (a file image reuses freed blocks in place). Parsing
// and printing only; the work is in src/fs/open-image.ts and src/fs/object.
import type { Command } from 'commander';
import { openAdmin } from '../control/open-admin.ts';
import type { GcReport } from '../fs/object/object-gc.ts';
import { checkObjectImageByName, createObjectImageByName } from '../fs/open-image.ts';
import { IomapdError } from '../util/errors.ts';
import { reportAndExit } from './report.ts';

function human(n: number): string {
  for (const [u, f] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) {
    if (n >= f && n % f === 0) return `${n / f}${u}`;
  }
  return `${n}`;
}

/** `create s3://...`: the image and its first volume, in the bucket. */
export async function createObjectImageCommand(
  url: string,
  o: { size: number; capacity: number; blockSize: number; volume: string; preallocate: boolean },
): Promise<void> {
  const image = await createObjectImageByName(url, { dataBytes: o.capacity, blockSize: o.blockSize });
  try {
    await image.createVolume(o.volume, o.size, { preallocate: o.preallocate });
  } finally {
    await image.close();
  }
  process.stdout.write(`created ${url}: volume ${o.volume} of ${human(o.size)}, capacity ${human(o.capacity)}\n`);
}

/** `check s3://...`: reads only; exit 2 when a reference does not resolve. Leaked objects are GC's, not errors. */
export async function checkObjectImageCommand(url: string, o: { repair?: boolean; json?: boolean }): Promise<void> {
  if (o.repair) throw new IomapdError('BAD_ARGUMENT', `--repair applies to file images; on ${url} run \`iomapd gc ${url}\` to delete leaked objects`);
  const r = await checkObjectImageByName(url);
  if (o.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  else {
    for (const e of r.errors) process.stdout.write(`error: ${e}\n`);
    if (r.leaked.length > 0) process.stdout.write(`leaked: ${r.leaked.length} object(s) nothing reachable names (gc deletes them): ${r.leaked.slice(0, 10).join(', ')}\n`);
    process.stdout.write(
      `${r.errors.length === 0 ? 'clean' : `${r.errors.length} problem(s)`}: ${r.objects} objects, ${r.bytes} bytes stored, ${r.liveBytes} bytes live, ${r.journalsReplayed} journal(s) replayed${r.rereads > 0 ? `; read again ${r.rereads} time(s) because a writer moved it on` : ''}\n`,
    );
  }
  if (r.errors.length > 0) {
    process.stderr.write(`iomapd: CORRUPT: ${url} has ${r.errors.length} problem(s)\n`);
    process.exit(2);
  }
}

function gcLine(r: GcReport): string {
  return `gc: compacted ${r.segmentsCompacted} segment(s), moved ${r.blocksMoved} block(s), dropped ${r.entriesDropped} index entr${r.entriesDropped === 1 ? 'y' : 'ies'}, deleted ${r.deleted.length} object(s), ${r.waiting} orphan(s) waiting out their grace period`;
}

export function registerObjectCommands(program: Command): void {
  program
    .command('gc')
    .description('reclaim the space of overwritten, trimmed and deleted data in a bucket image (through its daemon when one serves it here)')
    .argument('<image>', 's3://BUCKET/PREFIX')
    .option('--grace <SECONDS>', "delete an older writer's unreferenced segments only once seen this long ago by the process doing the pass (0: now, when no older writer can still be uploading)")
    .option('--json', 'print JSON')
    .action(async (image: string, o: { grace?: string; json?: boolean }) => {
      try {
        if (o.grace !== undefined && !/^\d{1,7}$/.test(o.grace)) throw new IomapdError('BAD_ARGUMENT', `--grace takes whole seconds, got ${JSON.stringify(o.grace)}`);
        const admin = await openAdmin(image, false);
        const r = await admin.gc(o.grace === undefined ? {} : { graceMs: Number(o.grace) * 1000 }).finally(() => admin.close());
        process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : `${gcLine(r)}\n`);
      } catch (err) {
        reportAndExit(err);
      }
    });
}
