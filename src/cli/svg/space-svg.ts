// `iomapd info IMAGE --svg FILE`: where an image's space goes. One bar for the whole file (journal,
// metadata, each volume's own data, data shared by several volumes, free), a table of the same
// figures, and a bar per volume (its own and its shared bytes against its size).
//
// Own and shared data come from a sweep over every volume's physical extents (the map listing):
// bytes referenced by one volume are that volume's, bytes referenced by more are shared (counted
// once). Metadata is the rest of the used data area: checkpoints, frees not yet durable, reservations.
import type { StoreStats } from '../../fs/image-store.ts';
import type { ExtentInfo } from '../../fs/mapping.ts';
import { COLOURS, document, esc, FONT, PALETTE, size, swatch } from './svg.ts';

export interface SpaceVolume {
  readonly name: string;
  readonly size: number;
  readonly snapshot: boolean;
  readonly readOnly: boolean;
  readonly extents: readonly ExtentInfo[];
}

export interface SpaceFigures {
  readonly journal: number;
  readonly metadata: number;
  readonly shared: number;
  readonly free: number;
  readonly capacity: number;
  /** Per volume, in the order given: bytes only it references, and bytes it shares with others. */
  readonly own: number[];
  readonly sharedBy: number[];
}

/** The sweep: own and shared bytes of each volume, shared bytes counted once overall. */
export function spaceFigures(stats: StoreStats, volumes: readonly SpaceVolume[]): SpaceFigures {
  const events: Array<[number, number, number]> = []; // [physical, +1/-1, volume index]
  volumes.forEach((v, i) => {
    for (const e of v.extents) {
      if (e.physical < 0 || (e.type !== 'mapped' && e.type !== 'unwritten')) continue;
      events.push([e.physical, 1, i], [e.physical + e.length, -1, i]);
    }
  });
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const own = volumes.map(() => 0);
  const sharedBy = volumes.map(() => 0);
  const active = new Map<number, number>();
  let depth = 0;
  let shared = 0;
  let at = 0;
  for (const [pos, delta, vol] of events) {
    const len = pos - at;
    if (len > 0 && depth === 1) own[active.keys().next().value!]! += len;
    else if (len > 0 && depth > 1) {
      shared += len;
      for (const k of active.keys()) sharedBy[k]! += len;
    }
    at = pos;
    depth += delta;
    const n = (active.get(vol) ?? 0) + delta;
    if (n === 0) active.delete(vol);
    else active.set(vol, n);
  }
  const capacity = stats.dataBlocks * stats.blockSize;
  const free = stats.freeBlocks * stats.blockSize;
  const used = own.reduce((a, b) => a + b, 0) + shared;
  return { journal: stats.journalBytes, metadata: Math.max(0, capacity - free - used), shared, free, capacity, own, sharedBy };
}

const LEFT = 24;
const BAR_W = 960;
/** Volumes with a colour of their own; the others share OTHERS. */
const MAX_COLOURED = PALETTE.length;
const OTHERS = '#b8c0cc';
/** Volumes listed with a bar of their own. */
const MAX_LISTED = 24;

interface Segment {
  readonly label: string;
  readonly bytes: number;
  readonly colour: string;
}

export function renderSpaceSvg(image: string, stats: StoreStats, volumes: readonly SpaceVolume[]): string {
  const f = spaceFigures(stats, volumes);
  // The biggest volumes get their own colour; past MAX_COLOURED the rest share one entry.
  const byOwn = volumes.map((_, i) => i).sort((a, b) => f.own[b]! - f.own[a]! || a - b);
  const coloured = new Set(byOwn.slice(0, volumes.length > MAX_COLOURED ? MAX_COLOURED - 1 : MAX_COLOURED));
  const rest = volumes.map((_, i) => i).filter((i) => !coloured.has(i));
  const inOrder = [...coloured].sort((a, b) => a - b); // colours follow the volume list's order
  const colourOf = (i: number) => (coloured.has(i) ? PALETTE[inOrder.indexOf(i)]! : OTHERS);
  const segments: Segment[] = [
    { label: 'journal', bytes: f.journal, colour: COLOURS.journal },
    { label: 'metadata', bytes: f.metadata, colour: COLOURS.metadata },
    ...volumes.flatMap((v, i) => (coloured.has(i) ? [{ label: `${v.name} (own data)`, bytes: f.own[i]!, colour: colourOf(i) }] : [])),
    ...(rest.length > 0 ? [{ label: `${rest.length} other volumes (own data)`, bytes: rest.reduce((n, i) => n + f.own[i]!, 0), colour: OTHERS }] : []),
    { label: 'shared by several volumes', bytes: f.shared, colour: COLOURS.shared },
    { label: 'free', bytes: f.free, colour: COLOURS.free },
  ];
  const total = f.journal + f.capacity;
  const out: string[] = [];
  let y = 30;
  out.push(`<text x="${LEFT}" y="${y}" ${FONT} font-size="19" font-weight="bold" fill="${COLOURS.ink}">space of ${esc(image)}</text>`);
  y += 22;
  out.push(
    `<text x="${LEFT}" y="${y}" ${FONT} font-size="13" fill="${COLOURS.faint}">${esc(
      `${size(total)}: journal ${size(f.journal)} and a data area of ${size(f.capacity)} in ${size(stats.blockSize)} blocks; ${volumes.length} volumes`,
    )}</text>`,
  );
  y += 18;

  // The whole-image bar; anything present gets at least 2 px.
  const present = segments.filter((s) => s.bytes > 0);
  const widths = present.map((s) => Math.max(2, (s.bytes / total) * BAR_W));
  const scale = BAR_W / widths.reduce((a, b) => a + b, 0);
  let x = LEFT;
  present.forEach((s, i) => {
    const w = widths[i]! * scale;
    out.push(`<rect x="${x.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="52" fill="${s.colour}"><title>${esc(`${s.label}: ${size(s.bytes)}`)}</title></rect>`);
    x += w;
  });
  out.push(`<rect x="${LEFT - 0.5}" y="${y - 0.5}" width="${BAR_W + 1}" height="53" fill="none" stroke="#00000033"/>`);
  y += 82;

  // The table: swatch, what, size, share of the image.
  for (const s of segments) {
    swatch(out, LEFT, y, s.colour, s.label);
    out.push(`<text x="${LEFT + 420}" y="${y + 1}" ${FONT} font-size="13" text-anchor="end" fill="${COLOURS.ink}">${esc(size(s.bytes))}</text>`);
    out.push(`<text x="${LEFT + 500}" y="${y + 1}" ${FONT} font-size="13" text-anchor="end" fill="${COLOURS.faint}">${((s.bytes / total) * 100).toFixed(1)}%</text>`);
    y += 22;
  }
  y += 16;

  // One bar per volume: own data, then shared, against the volume's size.
  out.push(`<text x="${LEFT}" y="${y}" ${FONT} font-size="14" font-weight="bold" fill="${COLOURS.ink}">volumes: own and shared data against their size</text>`);
  y += 18;
  const biggest = Math.max(1, ...volumes.map((v) => v.size));
  const NAME_W = 170;
  const VBAR_W = BAR_W - NAME_W - 300;
  volumes.slice(0, MAX_LISTED).forEach((v, i) => {
    const w = Math.max(4, (v.size / biggest) * VBAR_W);
    const ownW = f.own[i]! > 0 ? Math.max(1, (f.own[i]! / v.size) * w) : 0;
    const shW = f.sharedBy[i]! > 0 ? Math.max(1, (f.sharedBy[i]! / v.size) * w) : 0;
    const kind = v.snapshot ? 'snapshot' : v.readOnly ? 'read-only' : 'volume';
    out.push(`<text x="${LEFT}" y="${y + 13}" ${FONT} font-size="13" fill="${COLOURS.ink}">${esc(v.name)}<tspan fill="${COLOURS.faint}"> ${kind}</tspan></text>`);
    const bx = LEFT + NAME_W;
    out.push(`<rect x="${bx}" y="${y}" width="${w.toFixed(2)}" height="18" fill="${COLOURS.hole}"/>`);
    if (ownW > 0) out.push(`<rect x="${bx}" y="${y}" width="${ownW.toFixed(2)}" height="18" fill="${colourOf(i)}"/>`);
    if (shW > 0) out.push(`<rect x="${(bx + ownW).toFixed(2)}" y="${y}" width="${shW.toFixed(2)}" height="18" fill="${COLOURS.shared}"/>`);
    out.push(
      `<text x="${bx + w + 10}" y="${y + 13}" ${FONT} font-size="12" fill="${COLOURS.faint}">${esc(`${size(f.own[i]!)} own, ${size(f.sharedBy[i]!)} shared of ${size(v.size)}`)}</text>`,
    );
    y += 26;
  });
  if (volumes.length > MAX_LISTED) {
    out.push(`<text x="${LEFT}" y="${y + 13}" ${FONT} font-size="13" fill="${COLOURS.faint}">and ${volumes.length - MAX_LISTED} more volumes</text>`);
    y += 26;
  }
  y += 14;
  swatch(out, LEFT, y, COLOURS.hole, 'not allocated (reads as zeroes)');
  y += 20;
  return document(LEFT * 2 + BAR_W, y, `space of ${image}`, out);
}
