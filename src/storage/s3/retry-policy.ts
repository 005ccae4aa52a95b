// Retries of transient object-store failures: exponential backoff with full jitter (a random delay
// in [0, min(maxDelay, base * 2^n)), AWS's recommendation), a per-attempt timeout, and a bounded
// budget of attempts and wall time, after which the caller gets RetriesExhausted with the last
// failure. Pure apart from the injected clock, so the unit tests run it without a network or time.

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Wall time for all attempts and delays together; no attempt starts or runs past it. */
  readonly budgetMs: number;
  /** One attempt (request and body) is aborted after this long. */
  readonly attemptTimeoutMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 10,
  baseDelayMs: 100,
  maxDelayMs: 5_000,
  budgetMs: 60_000,
  attemptTimeoutMs: 15_000,
};

export interface RetryClock {
  now(): number;
  sleep(ms: number): Promise<void>;
  /** Uniform in [0, 1). */
  random(): number;
}

export const realClock: RetryClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

/** An attempt ran out of its time and was aborted. */
export class AttemptTimeout extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = 'AttemptTimeout';
  }
}

/** Every attempt failed transiently, or the budget ran out; `last` is the last failure. */
export class RetriesExhausted extends Error {
  readonly last: unknown;
  readonly attempts: number;
  readonly elapsedMs: number;
  constructor(last: unknown, attempts: number, elapsedMs: number) {
    super(`gave up after ${attempts} attempt(s) in ${Math.round(elapsedMs)} ms`);
    this.name = 'RetriesExhausted';
    this.last = last;
    this.attempts = attempts;
    this.elapsedMs = elapsedMs;
  }
}

/** The delay before retry number `retry` (0 for the first retry): full jitter. */
export function backoffDelay(retry: number, policy: RetryPolicy, random: () => number): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.floor(random() * cap);
}

export function checkRetryPolicy(policy: RetryPolicy): void {
  const ok =
    Number.isInteger(policy.maxAttempts) && policy.maxAttempts >= 1 &&
    policy.baseDelayMs >= 0 && policy.maxDelayMs >= policy.baseDelayMs &&
    policy.budgetMs > 0 && policy.attemptTimeoutMs > 0;
  if (!ok) throw new RangeError(`invalid retry policy ${JSON.stringify(policy)}`);
}

/**
 * Runs `attempt` until it succeeds, fails with an error `isTransient` rejects (thrown as is), or
 * the policy's attempts or budget run out (RetriesExhausted). Each attempt gets a signal that
 * aborts it when its time is up; a timed-out attempt counts as transient.
 */
export async function withRetries<T>(
  attempt: (signal: AbortSignal, attemptNumber: number) => Promise<T>,
  isTransient: (err: unknown) => boolean,
  policy: RetryPolicy,
  clock: RetryClock = realClock,
): Promise<T> {
  const start = clock.now();
  let last: unknown;
  let made = 0;
  for (let n = 0; n < policy.maxAttempts; n++) {
    if (n > 0) {
      const delay = backoffDelay(n - 1, policy, clock.random);
      if (clock.now() - start + delay >= policy.budgetMs) break;
      await clock.sleep(delay);
    }
    const timeoutMs = Math.round(Math.min(policy.attemptTimeoutMs, policy.budgetMs - (clock.now() - start)));
    if (timeoutMs <= 0) break;
    made++;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new AttemptTimeout(timeoutMs)), timeoutMs);
    try {
      return await attempt(controller.signal, n);
    } catch (err) {
      last = controller.signal.aborted ? controller.signal.reason : err;
      if (!controller.signal.aborted && !isTransient(err)) throw err;
    } finally {
      clearTimeout(timer);
    }
  }
  throw new RetriesExhausted(last, made, clock.now() - start);
}
