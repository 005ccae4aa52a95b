// Gathers what the pictures need through ImageAdmin (so they work on an idle image and, through
// the control channel, on a served one) and renders them.
import type { ImageAdmin } from '../../control/admin.ts';
import { IomapdError } from '../../util/errors.ts';
import { renderMapSvg } from './map-svg.ts';
import { sharersOf } from './sharing.ts';
import { renderSpaceSvg } from './space-svg.ts';

/** The SVG of one volume's extent map, sharers included. */
export async function mapSvg(admin: ImageAdmin, image: string, volume: string): Promise<string> {
  const { volumes } = await admin.info();
  const v = volumes.find((x) => x.name === volume);
  if (!v) throw new IomapdError('NOT_FOUND', `no volume named ${JSON.stringify(volume)} in ${image}`);
  const extents = await admin.map(volume);
  const others = [];
  if (extents.some((e) => e.shared)) {
    for (const o of volumes) {
      if (o.name === volume || o.inline) continue;
      others.push({ name: o.name, kind: o.snapshot ? 'snapshot' : 'volume', extents: await admin.map(o.name) });
    }
  }
  const kind = [v.snapshot ? 'snapshot' : v.readOnly ? 'read-only volume' : 'volume', v.inline ? 'inline' : ''].filter(Boolean).join(', ');
  return renderMapSvg({ image, volume, size: v.size, kind, extents, sharers: sharersOf(extents, others) });
}

/** The SVG of the image's space. */
export async function spaceSvg(admin: ImageAdmin, image: string): Promise<string> {
  const { stats, volumes } = await admin.info();
  const withMaps = [];
  for (const v of volumes) withMaps.push({ ...v, extents: v.inline ? [] : await admin.map(v.name) });
  return renderSpaceSvg(image, stats, withMaps);
}
