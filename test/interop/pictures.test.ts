// `iomapd map --svg` and `iomapd info --svg` opened in a real browser (headless Chromium): the
// screenshot is not blank, carries each type's colour in the proportion of the bytes it stands
// for, and the rendered DOM carries the legend. The image is made so that every pixel column of
// the map is one type (4 KiB columns, 4 KiB-aligned writes), which makes the proportions exact.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COLOURS, PALETTE } from '../../src/cli/svg/svg.ts';
import { colourCounts, decodePng, type Png } from '../support/png.ts';
import { iomapd, requireTool, runOk, withIomapd, withTempDir } from './harness.ts';

/** Bar pixels per MiB in the map of a 16 MiB volume: 4 rows of 4 MiB, 1024 columns a row, 40 px high. */
const BAR_PX_PER_MIB = 256 * 40;

const CHROMIUM = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--force-device-scale-factor=1'];

async function screenshot(svg: string): Promise<Png> {
  const text = await readFile(svg, 'utf8');
  const [, w, h] = /<svg [^>]*width="(\d+)" height="(\d+)"/.exec(text)!;
  const png = `${svg}.png`;
  await runOk('chromium', [...CHROMIUM, `--window-size=${w},${h}`, `--screenshot=${png}`, `file://${svg}`], { timeoutMs: 60_000 });
  const shot = decodePng(await readFile(png));
  expect([shot.width, shot.height]).toEqual([Number(w), Number(h)]);
  return shot;
}

/** The document as Chromium holds it after loading (its DOM, serialized). */
async function renderedDom(svg: string): Promise<string> {
  return (await runOk('chromium', [...CHROMIUM, '--dump-dom', `file://${svg}`], { timeoutMs: 60_000 })).stdout;
}

function crop(png: Png, y0: number, y1: number): Png {
  return { width: png.width, height: y1 - y0, rgba: png.rgba.subarray(y0 * png.width * 4, y1 * png.width * 4) };
}

const near = (actual: number, expected: number, tolerance = 0.03) => {
  expect(actual, `${actual} vs ${expected}`).toBeGreaterThanOrEqual(expected * (1 - tolerance));
  expect(actual, `${actual} vs ${expected}`).toBeLessThanOrEqual(expected * (1 + tolerance));
};

describe('pictures in a browser', () => {
  it('map --svg and info --svg render with their colours in proportion and their legends', async (ctx) => {
    requireTool(ctx, 'chromium', 'qemu-io');
    await withTempDir(async (dir) => {
      const image = join(dir, 'pic.iomapd');
      await iomapd(['create', image, '--size', '4M', '--capacity', '96M']);
      await iomapd(['volume', 'create', image, 'vm', '--size', '16M']);
      await iomapd(['volume', 'create', image, 'pre', '--size', '8M', '--preallocate']);
      await iomapd(['volume', 'create', image, 'tiny', '--size', '1K']);
      const mapSvg = join(dir, 'vm.svg');
      const preSvg = join(dir, 'pre.svg');
      const infoSvg = join(dir, 'info.svg');
      await withIomapd({ transport: 'unix', file: image }, async (server) => {
        const io = (vol: string, ...cmds: string[]) => runOk('qemu-io', ['-f', 'raw', server.uriFor(vol), ...cmds.flatMap((c) => ['-c', c])], { server });
        await io('vm', 'write -P 0x11 0 4M');
        await iomapd(['snapshot', image, 'vm', 'vm-1']);
        await io('vm', 'write -P 0x22 1M 1M', 'write -P 0x33 8M 2M');
        await iomapd(['clone', image, 'vm-1', 'work']);
        await io('work', 'write -P 0x44 3M 512k');
        await io('pre', 'write -P 0x55 2M 2M');
        // Through the daemon's control channel, as `map` and `info` go on a served image.
        await iomapd(['map', image, 'vm', '--svg', mapSvg]);
        await iomapd(['map', image, 'pre', '--svg', preSvg]);
        await iomapd(['info', image, '--svg', infoSvg]);
      });

      // vm: mapped 3 MiB (1-2 MiB and 8-10 MiB), shared 3 MiB (with vm-1: 0-1 and 2-4 MiB), holes 10 MiB;
      // vm-1 shares all 3 MiB, work 2.5 MiB (it rewrote 3-3.5 MiB).
      const vm = colourCounts(await screenshot(mapSvg));
      const swatch = 14 * 14;
      near(vm.get(COLOURS.mapped)! - swatch, 3 * BAR_PX_PER_MIB, 0.02);
      near(vm.get(COLOURS.shared)! - swatch, 3 * BAR_PX_PER_MIB, 0.02);
      near(vm.get(COLOURS.hole)! - swatch, 10 * BAR_PX_PER_MIB, 0.02);
      near(vm.get(PALETTE[1]!)! - swatch, 3 * 256 * 9, 0.03); // vm-1's lane: 768 columns, 9 px high
      near(vm.get(PALETTE[2]!)! - swatch, 2.5 * 256 * 9, 0.03); // work's lane
      expect(vm.get(COLOURS.unwritten) ?? 0).toBeLessThan(swatch + 1); // only the legend's swatch
      const vmDom = await renderedDom(mapSvg);
      for (const text of ['mapped 3 MiB', 'shared (mapped or unwritten) 3 MiB', 'unwritten 0', 'inline 0', 'hole 10 MiB', 'shared with vm-1 (snapshot) 3 MiB', 'shared with work (volume) 2.5 MiB']) {
        expect(vmDom).toContain(text);
      }

      // pre: 2 MiB mapped, 6 MiB unwritten (8 MiB: 4 rows of 2 MiB, 2 KiB columns).
      const pre = colourCounts(await screenshot(preSvg));
      near((pre.get(COLOURS.unwritten)! - swatch) / (pre.get(COLOURS.mapped)! - swatch), 3, 0.02);
      expect(await renderedDom(preSvg)).toContain('no blocks shared with a snapshot or clone');

      // info: the whole-image bar, cropped, is mostly free space in the proportion `info --json` gives.
      const infoPng = await screenshot(infoSvg);
      const bar = colourCounts(crop(infoPng, 71, 121));
      const stats = JSON.parse((await iomapd(['info', image, '--json'])).stdout) as { freeBlocks: number; blockSize: number; dataBlocks: number; journalBytes: number };
      const freeShare = (stats.freeBlocks * stats.blockSize) / (stats.dataBlocks * stats.blockSize + stats.journalBytes);
      near(bar.get(COLOURS.free)! / (960 * 50), freeShare, 0.02);
      for (const colour of [COLOURS.journal, COLOURS.shared, PALETTE[1]!]) expect(bar.get(colour) ?? 0, colour).toBeGreaterThan(50);
      expect([...colourCounts(infoPng).values()].filter((n) => n > 100).length).toBeGreaterThanOrEqual(6);
      const infoDom = await renderedDom(infoSvg);
      for (const text of ['space of', 'journal', 'metadata', 'vm (own data)', 'shared by several volumes', 'free', 'vm-1', 'work', 'pre', 'tiny']) {
        expect(infoDom).toContain(text);
      }
    });
  }, 300_000); // five Chromium runs and a daemon, on a loaded machine
});
