// `iomapd serve` options for the server's limits (src/server/limits.ts ServerLimits; README "Limits").
import type { Command } from 'commander';
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from '../server/limits.ts';
import { IomapdError } from '../util/errors.ts';

export interface LimitOptions {
  maxConnections?: string;
  maxInFlight?: string;
  maxInFlightTotal?: string;
  handshakeTimeout?: string;
  idleTimeout?: string;
}

const d = DEFAULT_SERVER_LIMITS;

export function addLimitOptions(command: Command): Command {
  return command
    .option('--max-connections <N>', `connections served at once; more are closed at accept (default ${d.maxConnections})`)
    .option('--max-in-flight <N>', `requests in flight per connection before it stops reading (default ${d.maxInFlightPerConnection})`)
    .option('--max-in-flight-total <N>', `requests in flight over all connections (default ${d.maxInFlightTotal})`)
    .option('--handshake-timeout <SECONDS>', `close clients that have not finished the handshake by then; 0: never (default ${d.handshakeTimeoutMs / 1000})`)
    .option('--idle-timeout <SECONDS>', 'close connections idle that long with nothing in flight; 0: never (default 0: kernel clients keep idle connections)');
}

function count(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < 1) throw new IomapdError('BAD_ARGUMENT', `${flag} must be a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

function seconds(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const s = Number(text);
  if (text.trim() === '' || !Number.isFinite(s) || s < 0 || s > 86_400 * 365) throw new IomapdError('BAD_ARGUMENT', `${flag} must be a number of seconds >= 0, got ${JSON.stringify(text)}`);
  return Math.round(s * 1000);
}

/** The limits the options set; anything not given keeps its default. */
export function limitsFromOptions(o: LimitOptions): Partial<ServerLimits> {
  const entries: Array<[keyof ServerLimits, number | undefined]> = [
    ['maxConnections', count(o.maxConnections, '--max-connections')],
    ['maxInFlightPerConnection', count(o.maxInFlight, '--max-in-flight')],
    ['maxInFlightTotal', count(o.maxInFlightTotal, '--max-in-flight-total')],
    ['handshakeTimeoutMs', seconds(o.handshakeTimeout, '--handshake-timeout')],
    ['idleTimeoutMs', seconds(o.idleTimeout, '--idle-timeout')],
  ];
  return Object.fromEntries(entries.filter(([, v]) => v !== undefined));
}
