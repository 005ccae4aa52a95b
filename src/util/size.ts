// Human sizes for the CLI: "1073741824", "512K", "64M", "1G", "2T", "1GiB", "4k". Powers of 1024.
import { IomapdError } from './errors.ts';

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

export function parseSize(text: string): number {
  const m = /^\s*(\d+)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text);
  if (m === null) throw new IomapdError('BAD_ARGUMENT', `"${text}" is not a size (e.g. 512, 64M, 1G, 1GiB)`);
  const bytes = Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(bytes)) throw new IomapdError('BAD_ARGUMENT', `size "${text}" is too large`);
  return bytes;
}

export function formatSize(bytes: number): string {
  for (const [unit, scale] of [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale} ${unit}`;
  }
  return `${bytes} bytes`;
}
