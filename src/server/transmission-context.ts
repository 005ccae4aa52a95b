// What a finished negotiation fixes for the transmission phase: how requests are validated and
// how they are dispatched and answered, for one export and the options the client chose.
import type { HeaderStyle } from '../protocol/transmission.ts';
import type { DispatchContext } from './dispatch.ts';
import type { Export, ExportRegistry } from './export-registry.ts';
import type { Session } from './negotiation.ts';
import type { RequestMetrics } from './request-metrics.ts';
import { transmissionFlags } from './transmission-flags.ts';
import type { ValidationContext } from './validate.ts';

export interface Transmission {
  readonly export: Export;
  readonly validation: ValidationContext;
  readonly dispatch: DispatchContext;
}

export function transmissionContext(session: Session, exp: Export, registry: ExportRegistry, metrics: RequestMetrics | null = null): Transmission {
  const s = session;
  const style: HeaderStyle = s.extended ? 'extended' : s.structured ? 'structured' : 'simple';
  const flags = transmissionFlags(exp.device, s.structured);
  // A selection made for another export does not carry over (proto.md, SET_META_CONTEXT).
  const contexts = s.meta !== null && registry.find(s.meta.exportName) === exp ? s.meta.ids : new Map<string, number>();
  return {
    export: exp,
    validation: {
      size: exp.device.size,
      readOnly: exp.device.readOnly,
      transmissionFlags: flags,
      minimumBlock: exp.device.blockSizes.minimum,
      extended: s.extended,
      hasMetaContext: contexts.size > 0,
    },
    dispatch: { device: exp.device, style, contexts, metrics },
  };
}
