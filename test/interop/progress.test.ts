// The progress bar of import, export and check: drawn on a terminal (a pseudo-terminal made by
// `script` from util-linux/bsdutils), absent on a pipe, forced by --progress, hidden by
// --no-progress. It goes to stderr, so stdout keeps only the command's result line.
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAIN, NODE } from '../support/daemon.ts';
import { formatCommand, iomapd, MiB, requireTool, run, withTempDir } from './harness.ts';

/** Runs the iomapd CLI on a pseudo-terminal; returns what the terminal showed, escapes removed. */
async function onTerminal(args: string[]): Promise<string> {
  const r = await run('script', ['-qec', formatCommand(NODE, [MAIN, ...args]), '/dev/null'], { env: { ...process.env, COLUMNS: '160' } });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return r.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '').replace(/\r/g, '\n');
}

/** A bar line: label, a percentage, figures, a rate and an ETA. */
const bar = (label: string) => new RegExp(`${label} \\[[^\\]]+\\] 100% \\| .+ of .+ \\| .+/s \\| ETA \\d`);

describe('progress bars', () => {
  it('import and export draw one on a terminal, none on a pipe; --progress and --no-progress override', async (ctx) => {
    requireTool(ctx, 'script');
    await withTempDir(async (dir) => {
      const image = join(dir, 'a.iomapd');
      await iomapd(['create', image, '--size', '4M', '--capacity', '96M']);
      const raw = join(dir, 'in.raw');
      await writeFile(raw, Buffer.alloc(24 * MiB, 0x6b));
      await truncate(raw, 40 * MiB);

      const tty = await onTerminal(['import', raw, image, 'a']);
      expect(tty).toMatch(bar('import'));
      expect(tty).toMatch(/imported .* volume a \(new\)/);

      const pipe = await run(NODE, [MAIN, 'import', raw, image, 'b']);
      expect(pipe.code).toBe(0);
      expect(pipe.stderr).toBe('');
      expect(pipe.stdout).toMatch(/^imported .* volume b \(new\): 40\.0 MiB: 24\.0 MiB of data written, 16\.0 MiB left as holes\n$/);

      const forced = await run(NODE, [MAIN, 'export', image, 'a', join(dir, 'out.raw'), '--progress']);
      expect(forced.code).toBe(0);
      expect(forced.stderr).toMatch(bar('export'));
      expect(forced.stdout).not.toMatch(/export \[/);

      const hidden = await onTerminal(['export', image, 'b', join(dir, 'out2.raw'), '--no-progress']);
      expect(hidden).not.toMatch(/export \[/);
      expect(hidden).toMatch(/exported .* volume b/);

      const check = await onTerminal(['check', image]);
      expect(check).toMatch(/check \[[^\]]+\] 100% \| \d+ of \d+ \| .+ items\/s/);
      expect(check).toMatch(/^clean: /m);
      const checkPipe = await run(NODE, [MAIN, 'check', image]);
      expect(checkPipe.stderr).toBe('');
    });
  }, 180_000);
});
