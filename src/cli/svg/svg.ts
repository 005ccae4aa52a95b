// Small helpers for the hand-written SVG pictures (`map --svg`, `info --svg`): escaping, human
// sizes, round axis ticks, and the colours both pictures share so a legend means one thing.

export const FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"';

/** The mapping types' colours, and the other regions of an image. */
export const COLOURS = {
  hole: '#e8eaed',
  unwritten: '#f6c343',
  mapped: '#2f6fdf',
  shared: '#8e44c9',
  inline: '#22a06b',
  free: '#e8eaed',
  metadata: '#6b7280',
  journal: '#374151',
  ink: '#1f2933',
  faint: '#7b8794',
  background: '#ffffff',
} as const;

/** Colours for individual volumes and sharers (distinct from the type colours above). */
export const PALETTE = ['#2f6fdf', '#e8743b', '#19a979', '#ed4a7b', '#13a4b4', '#9c6b30', '#b3a21f', '#6c8893'];

export function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** 0, 512 B, 4 KiB, 1.5 MiB, 16 TiB: short, for axes and legends. */
export function size(n: number): string {
  if (n === 0) return '0';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = v < 10 ? 2 : v < 100 ? 1 : 0;
  const text = Number.isInteger(v) ? `${v}` : digits === 0 ? v.toFixed(0) : v.toFixed(digits).replace(/\.?0+$/, '');
  return `${text} ${units[i]}`;
}

/** A round step (1, 2 or 5 times a power of two's binary unit) giving about `count` ticks over `span` bytes. */
export function tickStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const unit = 1024 ** Math.max(0, Math.floor(Math.log(Math.max(raw, 1)) / Math.log(1024)));
  for (const m of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]) if (unit * m >= raw) return unit * m;
  return unit * 1024;
}

/** An SVG document with a white background. */
export function document(width: number, height: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="${COLOURS.background}"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** One legend entry: a swatch and its text, returning the width used. */
export function swatch(out: string[], x: number, y: number, colour: string, text: string, pattern?: string): number {
  out.push(`<rect x="${x}" y="${y - 10}" width="14" height="14" rx="2" fill="${colour}" stroke="#00000022"/>`);
  if (pattern) out.push(`<rect x="${x}" y="${y - 10}" width="14" height="14" rx="2" fill="url(#${pattern})"/>`);
  out.push(`<text x="${x + 20}" y="${y + 1}" ${FONT} font-size="13" fill="${COLOURS.ink}">${esc(text)}</text>`);
  return 20 + text.length * 7.4 + 18;
}
