// Per-connection tallies of the commands and flags a client sent, so tests (and the kernel rig)
// can check that FLUSH and FUA really arrived. Counting is two array increments per request.
import { Cmd, CmdFlag } from '../protocol/constants.ts';
import { cmdName } from '../protocol/names.ts';

const FLAG_NAMES = Object.entries(CmdFlag);

export class RequestCounters {
  private readonly commands = new Map<number, number>();
  private readonly flags = new Map<string, number>();

  count(type: number, flags: number): void {
    this.commands.set(type, (this.commands.get(type) ?? 0) + 1);
    if (flags === 0) return;
    for (const [name, bit] of FLAG_NAMES) {
      if ((flags & bit) !== 0) this.flags.set(name, (this.flags.get(name) ?? 0) + 1);
    }
  }

  /** Counts by wire name, e.g. `{ WRITE: 10, FLUSH: 2, FUA: 3 }`. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [type, n] of this.commands) out[cmdName(type)] = n;
    for (const [name, n] of this.flags) out[name] = n;
    return out;
  }

  get(type: (typeof Cmd)[keyof typeof Cmd]): number {
    return this.commands.get(type) ?? 0;
  }
}
