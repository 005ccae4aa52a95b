// Image administration commands: create, volume, snapshot, clone, info, map, stats, reload, check.
// Parsing and printing only; the work is in src/fs, reached directly or, while a daemon serves the
// image, through its control channel (src/control).
import { unlink, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { IomapdError } from '../util/errors.ts';
import type { ImageAdmin, ReloadResult } from '../control/admin.ts';
import { openAdmin, openDaemon } from '../control/open-admin.ts';
import { createImageFile } from '../fs/image-file.ts';
import type { VolumeInfo } from '../fs/volumes.ts';
import { mapSvg, spaceSvg } from './svg/pictures.ts';
import { registerBackup } from './backup-command.ts';
import { registerCheck } from './check-command.ts';
import { registerDiff } from './diff-command.ts';
import { isObjectImageName } from '../fs/image-name.ts';
import { createObjectImageCommand } from './object-commands.ts';
import { statsText } from './stats-text.ts';
import { reportAndExit } from './report.ts';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** "4096", "64K", "512M", "1G", "2T" (binary units; an optional trailing "iB"/"B"). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+)\s*([kmgtb]?)(?:i?b)?\s*$/i.exec(text);
  const n = m ? Number(m[1]) * UNITS[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new IomapdError('BAD_ARGUMENT', `bad size ${JSON.stringify(text)}`);
  return n;
}

function human(n: number): string {
  for (const [u, f] of [['T', 1024 ** 4], ['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) {
    if (n >= f && n % f === 0) return `${n / f}${u}`;
  }
  return `${n}`;
}

/** Runs `fn` on the image: through the serving daemon's control channel if one holds it, else directly. */
async function withImage<T>(path: string, readOnly: boolean, fn: (a: ImageAdmin) => Promise<T>): Promise<T> {
  const admin = await openAdmin(path, readOnly);
  try {
    return await fn(admin);
  } finally {
    await admin.close();
  }
}

function run(fn: (...args: any[]) => Promise<void>): (...args: any[]) => Promise<void> {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (err) {
      reportAndExit(err);
    }
  };
}

function onOff(option: string, value: string): boolean {
  if (value === 'on') return true;
  if (value === 'off') return false;
  throw new IomapdError('BAD_ARGUMENT', `${option} takes on or off, got ${JSON.stringify(value)}`);
}

function volumeLine(v: VolumeInfo): string {
  const kind = v.snapshot ? 'snapshot' : v.readOnly ? 'read-only' : 'volume';
  return `${v.name}\t${human(v.size)}\t${kind}${v.inline ? ' inline' : ''}${v.requireTls ? ' require-tls' : ''}\tallocated ${human(v.allocatedBytes)}\textents ${v.extents}`;
}

function reloadLine(r: ReloadResult): string {
  if (r.tls === 'off') return 'reloaded: the daemon serves with --tls off, so there was no TLS material or access list to re-read';
  const n = r.restrictedExports;
  return `reloaded TLS material and access lists (--tls ${r.tls}; ${n} export${n === 1 ? '' : 's'} restricted by --allow/--access)`;
}

export function registerImageCommands(program: Command): void {
  program
    .command('create')
    .description('create an image (a file, or s3://BUCKET/PREFIX in a bucket) holding one volume of --size')
    .argument('<image>', 'image file to create (must not exist), or s3://BUCKET/PREFIX (an empty prefix)')
    .requiredOption('--size <bytes>', 'size of the first volume (K, M, G, T suffixes)')
    .option('--capacity <bytes>', 'data capacity of the image (default: --size)')
    .option('--block-size <bytes>', 'allocation block size, 4K to 64K', '4096')
    .option('--volume <name>', 'name of the first volume', 'default')
    .option('--preallocate', 'allocate the whole first volume now (unwritten: reads as zeros)')
    .action(
      run(async (image: string, o: { size: string; capacity?: string; blockSize: string; volume: string; preallocate?: boolean }) => {
        const size = parseSize(o.size);
        const capacity = o.capacity ? parseSize(o.capacity) : size;
        if (isObjectImageName(image)) {
          const opts = { size, capacity, blockSize: parseSize(o.blockSize), volume: o.volume, preallocate: !!o.preallocate };
          return createObjectImageCommand(image, opts);
        }
        const store = await createImageFile(image, { dataBytes: capacity, blockSize: parseSize(o.blockSize) });
        try {
          await store.createVolume(o.volume, size, { preallocate: !!o.preallocate });
        } catch (err) {
          // Do not leave a half-made image behind.
          await store.close().catch(() => {});
          await unlink(image).catch(() => {});
          throw err;
        }
        await store.close();
        process.stdout.write(`created ${image}: volume ${o.volume} of ${human(size)}, capacity ${human(capacity)}\n`);
      }),
    );

  const volume = program.command('volume').description('manage the volumes of an image');
  volume
    .command('create')
    .argument('<image>')
    .argument('<name>')
    .requiredOption('--size <bytes>', 'volume size')
    .option('--preallocate', 'allocate the whole volume now')
    .option('--read-only', 'create the volume read-only')
    .option('--require-tls', 'serve the volume only to TLS clients (never exported by serve --tls off)')
    .action(
      run(async (image: string, name: string, o: { size: string; preallocate?: boolean; readOnly?: boolean; requireTls?: boolean }) => {
        const v = await withImage(image, false, (a) =>
          a.createVolume(name, parseSize(o.size), { preallocate: !!o.preallocate, readOnly: !!o.readOnly, requireTls: !!o.requireTls }),
        );
        process.stdout.write(`created volume ${v.name} (${human(v.size)})${v.requireTls ? ', TLS required' : ''}\n`);
      }),
    );
  volume
    .command('set')
    .description("change a volume's settings")
    .argument('<image>')
    .argument('<name>')
    .requiredOption('--require-tls <on|off>', 'serve the volume only to TLS clients (on) or to every client the --tls mode admits (off)')
    .action(
      run(async (image: string, name: string, o: { requireTls: string }) => {
        const on = onOff('--require-tls', o.requireTls);
        const v = await withImage(image, false, (a) => a.setRequireTls(name, on));
        process.stdout.write(`volume ${v.name}: TLS ${v.requireTls ? 'required' : 'not required'}\n`);
      }),
    );
  volume
    .command('rm')
    .argument('<image>')
    .argument('<name>')
    .action(
      run(async (image: string, name: string) => {
        await withImage(image, false, (a) => a.deleteVolume(name));
        process.stdout.write(`removed volume ${name}\n`);
      }),
    );
  volume
    .command('resize')
    .argument('<image>')
    .argument('<name>')
    .argument('<size>')
    .action(
      run(async (image: string, name: string, size: string) => {
        const v = await withImage(image, false, (a) => a.resizeVolume(name, parseSize(size)));
        process.stdout.write(`resized volume ${v.name} to ${human(v.size)}\n`);
      }),
    );
  volume
    .command('ls')
    .argument('<image>')
    .option('--json', 'print JSON')
    .action(
      run(async (image: string, o: { json?: boolean }) => {
        const list = await withImage(image, true, (a) => a.listVolumes());
        if (o.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        else for (const v of list) process.stdout.write(`${volumeLine(v)}\n`);
      }),
    );

  program
    .command('snapshot')
    .description('take a read-only snapshot of a volume')
    .argument('<image>')
    .argument('<volume>')
    .argument('<name>')
    .action(
      run(async (image: string, vol: string, name: string) => {
        await withImage(image, false, (a) => a.snapshot(vol, name));
        process.stdout.write(`snapshot ${name} of ${vol}\n`);
      }),
    );

  program
    .command('clone')
    .description('create a writable volume sharing the blocks of a snapshot')
    .argument('<image>')
    .argument('<snapshot>')
    .argument('<newvol>')
    .action(
      run(async (image: string, snap: string, name: string) => {
        await withImage(image, false, (a) => a.clone(snap, name));
        process.stdout.write(`clone ${name} of ${snap}\n`);
      }),
    );

  registerDiff(program);
  registerBackup(program);

  program
    .command('info')
    .description('print the image header, space use and volumes')
    .argument('<image>')
    .option('--json', 'print JSON')
    .option('--svg <file>', "draw the image's space (journal, metadata, each volume's data, shared, free) as an SVG picture")
    .action(
      run(async (image: string, o: { json?: boolean; svg?: string }) => {
        if (o.svg !== undefined) {
          await writeFile(o.svg, await withImage(image, true, (a) => spaceSvg(a, image)));
          process.stdout.write(`wrote ${o.svg}\n`);
          return;
        }
        const { stats, volumes } = await withImage(image, true, (a) => a.info());
        if (o.json) {
          process.stdout.write(`${JSON.stringify({ ...stats, volumes }, null, 2)}\n`);
          return;
        }
        const B = stats.blockSize;
        const lines = [
          `format version: ${stats.formatVersion}`,
          `uuid: ${stats.uuid}`,
          `generation: ${stats.generation}`,
          `block size: ${B}`,
          `capacity: ${human(stats.dataBlocks * B)} (${stats.dataBlocks} blocks)`,
          `free: ${human(stats.freeBlocks * B)} (${stats.freeBlocks} blocks)`,
          `journal: ${human(stats.journalBytes)}`,
          `volumes: ${stats.volumes}`,
          ...volumes.map((v) => `  ${volumeLine(v)}`),
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      }),
    );

  program
    .command('map')
    .description("list a volume's extents with type and sharing")
    .argument('<image>')
    .argument('<volume>')
    .option('--json', 'print JSON')
    .option('--svg <file>', 'draw the map as an SVG picture (types, sharing with snapshots and clones) instead of listing it')
    .action(
      run(async (image: string, vol: string, o: { json?: boolean; svg?: string }) => {
        if (o.svg !== undefined) {
          await writeFile(o.svg, await withImage(image, true, (a) => mapSvg(a, image, vol)));
          process.stdout.write(`wrote ${o.svg}\n`);
          return;
        }
        const rows = await withImage(image, true, (a) => a.map(vol));
        if (o.json) {
          process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
          return;
        }
        for (const r of rows) {
          const phys = r.physical < 0 ? '-' : String(r.physical);
          process.stdout.write(`${r.offset}\t${r.length}\t${r.type}${r.shared ? ' shared' : ''}\t${phys}\n`);
        }
      }),
    );

  program
    .command('stats')
    .description("print a running daemon's per-export counters (through its control channel)")
    .argument('<image>')
    .option('--json', 'print JSON')
    .action(
      run(async (image: string, o: { json?: boolean }) => {
        const admin = await openDaemon(image);
        const stats = await admin.stats().finally(() => admin.close());
        process.stdout.write(o.json ? `${JSON.stringify(stats, null, 2)}\n` : statsText(stats));
      }),
    );

  program
    .command('reload')
    .description("re-read a running daemon's certificates, CRL, PSK file and access file (as SIGHUP does); a broken file keeps the old material")
    .argument('<image>')
    .action(
      run(async (image: string) => {
        const admin = await openDaemon(image, 'reload re-reads the files of a running daemon');
        const r = await admin.reload().finally(() => admin.close());
        process.stdout.write(`${reloadLine(r)}\n`);
      }),
    );

  registerCheck(program);
}
