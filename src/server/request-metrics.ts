// Per-export request metrics for `serve --metrics`: answered requests by command and result,
// their latency as histogram buckets, and the bytes successful READs and WRITEs moved. The hot
// path makes one record() call per answered request: a few array increments into typed arrays
// allocated once per export, no labels, no strings, no allocation. A scrape turns these into
// Prometheus samples (src/control/metrics-requests.ts).
//
// Latency is from the moment a request has been read whole (header and payload) to the moment
// its reply is queued; a request refused at validation is answered at once and counts as 0 s.
// DISC gets no reply and is not counted.
import { Cmd, NbdErr } from '../protocol/constants.ts';

/** The command label of each command index; the last one collects unknown command numbers. */
export const METRIC_COMMANDS: readonly string[] = [...Object.keys(Cmd), 'UNKNOWN'];
/** The result label of each result index: ok, then the NBD errno names, then any other errno. */
export const METRIC_RESULTS: readonly string[] = ['ok', ...Object.keys(NbdErr), 'other'];
/** Histogram bucket upper bounds in seconds (+Inf is implicit): 50 µs to 10 s. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

const COMMANDS = METRIC_COMMANDS.length;
const RESULTS = METRIC_RESULTS.length;
const BUCKETS = LATENCY_BUCKETS.length + 1;
const UNKNOWN_COMMAND = COMMANDS - 1;
/** errno -> result index; every NBD errno is below 256. */
const RESULT_OF = new Uint8Array(256).fill(RESULTS - 1);
RESULT_OF[0] = 0;
Object.values(NbdErr).forEach((errno, i) => (RESULT_OF[errno] = i + 1));
/** Bounds in milliseconds, the unit of performance.now(). */
const BOUNDS_MS = LATENCY_BUCKETS.map((s) => s * 1000);

export class RequestMetrics {
  /** Answered requests, [command * RESULTS + result]. */
  readonly requests = new Float64Array(COMMANDS * RESULTS);
  /** Latency buckets (not cumulative), [command * BUCKETS + bucket]; the last bucket is +Inf. */
  readonly buckets = new Float64Array(COMMANDS * BUCKETS);
  /** Sum of latencies in seconds, per command. */
  readonly latencySum = new Float64Array(COMMANDS);
  /** Payload bytes of successful READs and WRITEs. */
  bytesRead = 0;
  bytesWritten = 0;

  /** One answered request; `startMs` is performance.now() when it had been read whole. */
  record(type: number, errno: number, length: number, startMs: number): void {
    const ms = startMs === 0 ? 0 : performance.now() - startMs;
    const c = type < UNKNOWN_COMMAND ? type : UNKNOWN_COMMAND;
    const r = errno < 256 ? RESULT_OF[errno]! : RESULTS - 1;
    this.requests[c * RESULTS + r]!++;
    let b = 0;
    while (b < BOUNDS_MS.length && ms > BOUNDS_MS[b]!) b++;
    this.buckets[c * BUCKETS + b]!++;
    this.latencySum[c]! += ms / 1000;
    if (r !== 0) return;
    if (type === Cmd.READ) this.bytesRead += length;
    else if (type === Cmd.WRITE) this.bytesWritten += length;
  }

  /** Answered requests of one command with one result (tests and scrapes). */
  count(command: number, result: number): number {
    return this.requests[command * RESULTS + result]!;
  }

  /** Latency bucket counts of one command, not cumulative, the last being +Inf. */
  latencyBuckets(command: number): Float64Array {
    return this.buckets.subarray(command * BUCKETS, (command + 1) * BUCKETS);
  }
}

/**
 * The metrics of every export by name, made on first use and kept for the daemon's life, so an
 * export removed and added again (a volume resized through the control channel) counts on.
 */
export class RequestMetricsTable {
  private readonly byName = new Map<string, RequestMetrics>();

  forExport(name: string): RequestMetrics {
    let m = this.byName.get(name);
    if (m === undefined) this.byName.set(name, (m = new RequestMetrics()));
    return m;
  }

  entries(): IterableIterator<[string, RequestMetrics]> {
    return this.byName.entries();
  }
}
