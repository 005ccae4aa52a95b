// `iomapd map IMAGE VOLUME --svg FILE`: a volume's extent map as a picture.
//
// The volume is laid out in rows of ROW_PX pixel columns, each row a round span (a power of two
// bytes), so a 1 MiB volume and a 16 TiB one both fit. Every pixel column summarises the bytes it
// covers: its colours stack in proportion to the hole, unwritten, mapped, shared and inline bytes
// in it, and any type present gets at least one pixel, so a lone 4 KiB write in a terabyte still
// shows. Equal neighbouring columns merge into one rectangle, which keeps the file small. Under
// each row, one lane per snapshot or clone that shares the volume's blocks shows where.
import type { ExtentInfo } from '../../fs/mapping.ts';
import { COLOURS, document, esc, FONT, PALETTE, size, swatch, tickStep } from './svg.ts';
import type { Sharer } from './sharing.ts';

export interface MapPicture {
  readonly image: string;
  readonly volume: string;
  readonly size: number;
  /** volume, snapshot, read-only, inline ... for the subtitle. */
  readonly kind: string;
  readonly extents: readonly ExtentInfo[];
  readonly sharers: readonly Sharer[];
}

const ROW_PX = 1024; // a power of two, so a pixel column is a round size too
const LEFT = 96;
const BAR_H = 40;
const LANE_H = 9;
const ROW_GAP = 26;
const MAX_ROWS = 4;
const MAX_LANES = 6;

/** Stacking order, top to bottom (data at the bottom, like a filling glass). */
const TYPES = ['hole', 'unwritten', 'inline', 'shared', 'mapped'] as const;
type Kind = (typeof TYPES)[number];

function kindOf(e: ExtentInfo): Kind {
  if (e.type === 'hole') return 'hole';
  if (e.type === 'inline') return 'inline';
  return e.shared ? 'shared' : e.type;
}

/** Per-column byte sums over `columns` columns of `span` bytes each. */
class Columns {
  readonly sums: Float64Array;
  readonly columns: number;
  readonly span: number;
  constructor(columns: number, span: number) {
    this.columns = columns;
    this.span = span;
    this.sums = new Float64Array(columns);
  }

  /** Adds [start, end): partial first and last columns, whole ones between (O(columns touched)). */
  add(start: number, end: number): void {
    if (end <= start) return;
    const c0 = Math.min(this.columns - 1, Math.floor(start / this.span));
    const c1 = Math.min(this.columns - 1, Math.floor((end - 1) / this.span));
    if (c0 === c1) {
      this.sums[c0]! += end - start;
      return;
    }
    this.sums[c0]! += (c0 + 1) * this.span - start;
    for (let c = c0 + 1; c < c1; c++) this.sums[c]! += this.span;
    this.sums[c1]! += end - c1 * this.span;
  }
}

/** The least height a type present in a column gets: a lone 4 KiB write in 4 GiB still shows. */
const MIN_PX = 14;

/** The least width of a run holding data (or a lane's share). */
const MIN_W = 3;

/** Pixel heights for byte counts in one column: proportional, at least MIN_PX for anything present, summing to `h`. */
function heights(counts: number[], h: number): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) return counts.map(() => 0);
  const exact = counts.map((c) => (c / total) * h);
  const px = exact.map((x, i) => (counts[i]! > 0 ? Math.max(MIN_PX, Math.floor(x)) : 0));
  let left = h - px.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0]);
  for (let k = 0; left > 0; k = (k + 1) % order.length) {
    const i = order[k]![1];
    if (counts[i]! > 0) {
      px[i]!++;
      left--;
    }
  }
  while (left < 0) {
    const i = px.indexOf(Math.max(...px));
    px[i]!--;
    left++;
  }
  return px;
}

/** Row layout: a power-of-two span per row, as few rows as fit in MAX_ROWS. */
function rowsFor(bytes: number): { rows: number; rowSpan: number } {
  const rowSpan = 2 ** Math.ceil(Math.log2(Math.max(1024, bytes / MAX_ROWS)));
  return { rows: Math.max(1, Math.ceil(bytes / rowSpan)), rowSpan };
}

export function renderMapSvg(p: MapPicture): string {
  const { rows, rowSpan } = rowsFor(p.size);
  const colSpan = rowSpan / ROW_PX;
  const columns = rows * ROW_PX;
  const byKind = new Map<Kind, Columns>(TYPES.map((t) => [t, new Columns(columns, colSpan)]));
  const totals = new Map<Kind, number>(TYPES.map((t) => [t, 0]));
  let covered = 0;
  for (const e of p.extents) {
    const k = kindOf(e);
    const end = Math.min(p.size, e.offset + e.length);
    byKind.get(k)!.add(e.offset, end);
    totals.set(k, totals.get(k)! + end - e.offset);
    covered += end - e.offset;
  }
  // Whatever the listing left out is a hole.
  const hole = byKind.get('hole')!;
  if (covered < p.size) {
    const listed = new Columns(columns, colSpan);
    for (const e of p.extents) listed.add(e.offset, Math.min(p.size, e.offset + e.length));
    for (let c = 0; c < columns; c++) {
      const inVolume = Math.max(0, Math.min(colSpan, p.size - c * colSpan));
      hole.sums[c]! += Math.max(0, inVolume - listed.sums[c]!);
    }
    totals.set('hole', totals.get('hole')! + p.size - covered);
  }
  const lanes = p.sharers.slice(0, MAX_LANES).map((s) => {
    const cols = new Columns(columns, colSpan);
    for (const [o, l] of s.ranges) cols.add(o, Math.min(p.size, o + l));
    return cols;
  });

  const out: string[] = [];
  const extentCount = p.extents.filter((e) => e.type !== 'hole').length;
  const width = LEFT + ROW_PX + 40;
  const rowH = BAR_H + lanes.length * (LANE_H + 2) + ROW_GAP;
  let y = 30;
  out.push(`<text x="24" y="${y}" ${FONT} font-size="19" font-weight="bold" fill="${COLOURS.ink}">${esc(`${p.volume}`)}<tspan font-weight="normal" fill="${COLOURS.faint}"> in ${esc(p.image)}</tspan></text>`);
  y += 22;
  out.push(
    `<text x="24" y="${y}" ${FONT} font-size="13" fill="${COLOURS.faint}">${esc(
      `${p.kind}, ${size(p.size)}, ${extentCount} extent${extentCount === 1 ? '' : 's'}; one pixel column is ${size(colSpan)}, its colours stacked in proportion to what it holds`,
    )}</text>`,
  );
  y += 34;

  // Axis: ticks at round offsets inside a row, labelled from the row's start.
  const step = tickStep(rowSpan, 8);
  for (let t = 0; t <= rowSpan; t += step) {
    const x = LEFT + (t / rowSpan) * ROW_PX;
    out.push(`<line x1="${x}" y1="${y - 6}" x2="${x}" y2="${y}" stroke="${COLOURS.faint}"/>`);
    const label = rows === 1 ? size(t) : t === 0 ? '+0' : `+${size(t)}`;
    out.push(`<text x="${x}" y="${y - 10}" ${FONT} font-size="11" text-anchor="middle" fill="${COLOURS.faint}">${esc(label)}</text>`);
  }
  y += 4;

  for (let r = 0; r < rows; r++) {
    const rowStart = r * rowSpan;
    const rowCols = Math.min(ROW_PX, Math.ceil((p.size - rowStart) / colSpan));
    out.push(`<text x="${LEFT - 10}" y="${y + BAR_H / 2 + 4}" ${FONT} font-size="12" text-anchor="end" fill="${COLOURS.ink}">${esc(size(rowStart))}</text>`);
    drawBar(out, byKind, r * ROW_PX, rowCols, y);
    // The outline sits just outside the bar, on pixel boundaries, so it blends with no bar pixel.
    out.push(`<rect x="${LEFT - 0.5}" y="${y - 0.5}" width="${rowCols + 1}" height="${BAR_H + 1}" fill="none" stroke="#00000033"/>`);
    lanes.forEach((lane, i) => drawLane(out, lane, r * ROW_PX, rowCols, y + BAR_H + 2 + i * (LANE_H + 2), PALETTE[(i + 1) % PALETTE.length]!));
    y += rowH;
  }
  if (rows > 1 || rowSpan > p.size) {
    out.push(`<text x="${LEFT + ROW_PX}" y="${y - ROW_GAP + 16}" ${FONT} font-size="11" text-anchor="end" fill="${COLOURS.faint}">end: ${esc(size(p.size))}</text>`);
  }

  // Legend, with each type's total.
  y += 8;
  let x = 24;
  for (const t of ['mapped', 'shared', 'unwritten', 'inline', 'hole'] as const) {
    const label = `${t === 'shared' ? 'shared (mapped or unwritten)' : t} ${size(totals.get(t)!)}`;
    x += swatch(out, x, y, COLOURS[t], label);
  }
  y += 24;
  x = 24;
  p.sharers.slice(0, MAX_LANES).forEach((s, i) => {
    x += swatch(out, x, y, PALETTE[(i + 1) % PALETTE.length]!, `shared with ${s.name} (${s.kind}) ${size(s.bytes)}`);
    if (x > width - 260 && i < p.sharers.length - 1) {
      x = 24;
      y += 22;
    }
  });
  if (p.sharers.length > MAX_LANES) {
    out.push(`<text x="${x}" y="${y + 1}" ${FONT} font-size="13" fill="${COLOURS.faint}">and ${p.sharers.length - MAX_LANES} more sharers</text>`);
  }
  if (p.sharers.length === 0) out.push(`<text x="24" y="${y + 1}" ${FONT} font-size="13" fill="${COLOURS.faint}">no blocks shared with a snapshot or clone</text>`);
  y += 20;
  return document(width, y, `extent map of ${p.volume} in ${p.image}`, out);
}

/**
 * One row's bar: merged runs of columns with equal stacks. Runs holding data are drawn after the
 * all-hole ones, at least MIN_W px wide, so a lone column of data is not lost between holes.
 */
function drawBar(out: string[], byKind: Map<Kind, Columns>, first: number, count: number, y: number): void {
  let runStart = 0;
  let runKey = '';
  let runHeights: number[] = [];
  const dataRuns: string[] = [];
  const HOLE = TYPES.indexOf('hole');
  const emit = (end: number) => {
    if (end <= runStart) return;
    const onlyHole = runHeights.every((h, i) => i === HOLE || h === 0);
    const width = onlyHole ? end - runStart : Math.max(MIN_W, end - runStart);
    const x = LEFT + Math.min(runStart, count - width);
    let top = y;
    TYPES.forEach((t, i) => {
      const h = runHeights[i]!;
      if (h > 0) (onlyHole ? out : dataRuns).push(`<rect x="${x}" y="${top}" width="${width}" height="${h}" fill="${COLOURS[t]}"/>`);
      top += h;
    });
  };
  for (let c = 0; c < count; c++) {
    const hs = heights(TYPES.map((t) => byKind.get(t)!.sums[first + c]!), BAR_H);
    const key = hs.join(',');
    if (key !== runKey) {
      emit(c);
      runStart = c;
      runKey = key;
      runHeights = hs;
    }
  }
  emit(count);
  out.push(...dataRuns);
}

/** One sharer's lane: opacity in four steps (0.4 to 1) by the share of the column's bytes, any share visible. */
function drawLane(out: string[], lane: Columns, first: number, count: number, y: number, colour: string): void {
  out.push(`<rect x="${LEFT}" y="${y}" width="${count}" height="${LANE_H}" fill="#f4f5f7"/>`);
  let runStart = 0;
  let runLevel = 0;
  const emit = (end: number) => {
    if (runLevel === 0 || end <= runStart) return;
    const width = Math.max(MIN_W, end - runStart);
    out.push(`<rect x="${LEFT + Math.min(runStart, count - width)}" y="${y}" width="${width}" height="${LANE_H}" fill="${colour}" fill-opacity="${0.4 + 0.2 * (runLevel - 1)}"/>`);
  };
  for (let c = 0; c < count; c++) {
    const f = lane.sums[first + c]! / lane.span;
    const level = f <= 0 ? 0 : Math.max(1, Math.round(f * 4));
    if (level !== runLevel) {
      emit(c);
      runStart = c;
      runLevel = level;
    }
  }
  emit(count);
}
