// The progress bar of `iomapd backup`: drawn on a terminal (a pseudo-terminal made by `script`, as
// test/interop/progress.test.ts does), absent on a pipe, forced by --progress, hidden by
// --no-progress; on a served image too, where the daemon copies and sends its progress over the
// control channel. It goes to stderr, so stdout keeps only the command's result lines.
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAIN, NODE } from '../support/daemon.ts';
import { formatCommand, iomapd, MiB, requireTool, run, withIomapd, withTempDir } from './harness.ts';

/** Runs the iomapd CLI on a pseudo-terminal; returns what the terminal showed, escapes removed. */
async function onTerminal(args: string[]): Promise<string> {
  const r = await run('script', ['-qec', formatCommand(NODE, [MAIN, ...args]), '/dev/null'], { env: { ...process.env, COLUMNS: '160' } });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return r.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '').replace(/\r/g, '\n');
}

/** A finished backup bar: the label, 100%, the bytes copied of the bytes to copy, a rate, an ETA. */
const BAR = /backup \[[^\]]+\] 100% \| (\S+ \S+) of (\S+ \S+) \| .+\/s \| ETA \d/;

/** Fills the image's volume `a` with 24 MiB of data in a 40 MiB volume (the rest holes). */
async function fill(dir: string, image: string): Promise<void> {
  const raw = join(dir, 'in.raw');
  await writeFile(raw, Buffer.alloc(24 * MiB, 0x6b));
  await truncate(raw, 40 * MiB);
  await iomapd(['import', raw, image, 'a']);
}

describe('backup progress', () => {
  it('on an idle image: a bar on a terminal, none on a pipe; --progress and --no-progress override', async (ctx) => {
    requireTool(ctx, 'script');
    await withTempDir(async (dir) => {
      const image = join(dir, 'i.iomapd');
      await iomapd(['create', image, '--size', '4M', '--capacity', '128M']);
      await fill(dir, image);

      const tty = await onTerminal(['backup', image, 'a', '--to', join(dir, 'full.raw')]);
      // A full copy copies the data only: 24 MiB, the holes stay holes.
      expect(tty.match(BAR)?.slice(1), tty).toEqual(['24.0 MiB', '24.0 MiB']);
      expect(tty).toMatch(/^backed up a as snapshot a@backup-1 \(full copy\)/m);

      const pipe = await run(NODE, [MAIN, 'backup', image, 'a', '--to', join(dir, 'pipe.raw')]);
      expect(pipe.code, pipe.stderr).toBe(0);
      expect(pipe.stderr).toBe('');
      expect(pipe.stdout).toMatch(/^backed up a as snapshot a@backup-2 \(full copy\): 25165824 bytes written/);

      const forced = await run(NODE, [MAIN, 'backup', image, 'a', '--to', join(dir, 'forced.raw'), '--progress']);
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stderr).toMatch(BAR);
      expect(forced.stdout).not.toMatch(/backup \[/);

      const hidden = await onTerminal(['backup', image, 'a', '--to', join(dir, 'hidden.raw'), '--no-progress']);
      expect(hidden).not.toMatch(/backup \[/);
      expect(hidden).toMatch(/^backed up a as snapshot a@backup-4/m);
    });
  }, 180_000);

  it('on a served image: the daemon copies and the CLI draws its progress from the control channel', async (ctx) => {
    requireTool(ctx, 'script');
    await withTempDir(async (dir) => {
      const image = join(dir, 's.iomapd');
      await iomapd(['create', image, '--size', '4M', '--capacity', '128M']);
      await fill(dir, image);
      await withIomapd({ transport: 'unix', file: image }, async () => {
        const tty = await onTerminal(['backup', image, 'a', '--to', join(dir, 'served.raw')]);
        expect(tty.match(BAR)?.slice(1), tty).toEqual(['24.0 MiB', '24.0 MiB']);
        expect(tty).toMatch(/^backed up a as snapshot a@backup-1 \(full copy\)/m);
        const pipe = await run(NODE, [MAIN, 'backup', image, 'a', '--to', join(dir, 'served.raw'), '--since', 'a@backup-1']);
        expect(pipe.code, pipe.stderr).toBe(0);
        expect(pipe.stderr).toBe('');
        expect(pipe.stdout).toMatch(/^backed up a as snapshot a@backup-2 \(incremental since a@backup-1\): 0 bytes written/);
      });
    });
  }, 180_000);
});
