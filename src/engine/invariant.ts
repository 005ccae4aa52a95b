// Invariant violations (semantics E1/E4): an impossible mapping state becomes EIO with a
// rate-limited log line; it is never retried or guessed around.
import type { Logger } from '../util/log.ts';
import { IomapdError } from '../util/errors.ts';

let lastLog = 0;
let suppressed = 0;

export function invariant(log: Logger | null, what: string, detail: Record<string, unknown>): IomapdError {
  const now = Date.now();
  if (now - lastLog >= 1000) {
    log?.error({ ...detail, suppressed }, `engine invariant violated: ${what}`);
    lastLog = now;
    suppressed = 0;
  } else {
    suppressed++;
  }
  return new IomapdError('IO', `engine invariant violated: ${what}`);
}
