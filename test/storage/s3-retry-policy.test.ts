// The retry policy on its own (no network, a fake clock): full-jitter backoff bounds, which
// failures are retried, the attempt and time budgets, and the per-attempt timeout.
import { describe, expect, it } from 'vitest';
import {
  AttemptTimeout,
  backoffDelay,
  checkRetryPolicy,
  RetriesExhausted,
  withRetries,
  type RetryClock,
  type RetryPolicy,
} from '../../src/storage/s3/retry-policy.ts';

const POLICY: RetryPolicy = { maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 1_000, budgetMs: 60_000, attemptTimeoutMs: 5_000 };

/** Time moves only when the code under test sleeps; every sleep is recorded. */
function fakeClock(random = 0.5): RetryClock & { sleeps: number[] } {
  let t = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => t,
    sleep: async (ms) => {
      sleeps.push(ms);
      t += ms;
    },
    random: () => random,
  };
}

class Transient extends Error {}
const isTransient = (err: unknown) => err instanceof Transient;

/** An attempt that fails transiently `failures` times, then answers 'ok'. */
function flaky(failures: number) {
  const calls: number[] = [];
  return {
    calls,
    attempt: async (_signal: AbortSignal, n: number) => {
      calls.push(n);
      if (calls.length <= failures) throw new Transient(`failure ${calls.length}`);
      return 'ok';
    },
  };
}

describe('backoffDelay (full jitter)', () => {
  it.each([
    [0, 0, 0],
    [0, 0.999, 99],
    [1, 0.999, 199],
    [2, 0.5, 200],
    [3, 0.999, 799],
    [4, 0.999, 999], // capped by maxDelayMs
    [30, 0.999, 999],
  ])('retry %i with random %d waits %i ms', (retry, random, expected) => {
    expect(backoffDelay(retry, POLICY, () => random)).toBe(expected);
  });
});

describe('withRetries', () => {
  it('retries transient failures with growing jittered delays until one succeeds', async () => {
    const clock = fakeClock(0.5);
    const f = flaky(3);
    expect(await withRetries(f.attempt, isTransient, POLICY, clock)).toBe('ok');
    expect(f.calls).toEqual([0, 1, 2, 3]);
    expect(clock.sleeps).toEqual([50, 100, 200]);
  });

  it('throws a non-transient failure at once, without retrying', async () => {
    const clock = fakeClock();
    const fatal = new Error('fatal');
    let calls = 0;
    await expect(withRetries(async () => (calls++, Promise.reject(fatal)), isTransient, POLICY, clock)).rejects.toBe(fatal);
    expect(calls).toBe(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('gives up after maxAttempts with the last failure', async () => {
    const clock = fakeClock();
    const f = flaky(100);
    const err = await withRetries(f.attempt, isTransient, POLICY, clock).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetriesExhausted);
    expect((err as RetriesExhausted).attempts).toBe(5);
    expect(((err as RetriesExhausted).last as Error).message).toBe('failure 5');
    expect(f.calls).toHaveLength(5);
  });

  it('stops when the next delay would pass the time budget', async () => {
    const clock = fakeClock(0.999);
    const f = flaky(100);
    const policy = { ...POLICY, maxAttempts: 50, budgetMs: 1_000 };
    const err = (await withRetries(f.attempt, isTransient, policy, clock).catch((e: unknown) => e)) as RetriesExhausted;
    expect(err).toBeInstanceOf(RetriesExhausted);
    // Delays 99 + 199 + 399 = 697; the next (799) would end past 1000 ms.
    expect(clock.sleeps).toEqual([99, 199, 399]);
    expect(err.attempts).toBe(4);
    expect(err.elapsedMs).toBeLessThanOrEqual(1_000);
  });

  it('aborts an attempt that does not answer in time and counts it as transient', async () => {
    const policy = { ...POLICY, maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1, attemptTimeoutMs: 30 };
    const aborted: unknown[] = [];
    const hang = (signal: AbortSignal) =>
      new Promise<string>((_, reject) =>
        signal.addEventListener('abort', () => (aborted.push(signal.reason), reject(new Error('aborted'))), { once: true }),
      );
    const start = performance.now();
    const err = (await withRetries(hang, () => false, policy).catch((e: unknown) => e)) as RetriesExhausted;
    expect(err).toBeInstanceOf(RetriesExhausted);
    expect(err.attempts).toBe(3);
    expect(err.last).toBeInstanceOf(AttemptTimeout);
    expect(aborted).toHaveLength(3);
    expect(performance.now() - start).toBeLessThan(2_000);
  });

  it('no attempt outlives the budget', async () => {
    const policy = { ...POLICY, maxAttempts: 10, attemptTimeoutMs: 10_000, budgetMs: 50 };
    const start = performance.now();
    const hang = (signal: AbortSignal) => new Promise<string>((_, reject) => signal.addEventListener('abort', () => reject(new Error('x'))));
    const err = (await withRetries(hang, isTransient, policy).catch((e: unknown) => e)) as RetriesExhausted;
    expect(err).toBeInstanceOf(RetriesExhausted);
    expect(err.last).toBeInstanceOf(AttemptTimeout);
    expect(performance.now() - start).toBeLessThan(1_000);
  });

  it('rejects a policy that could not work', () => {
    expect(() => checkRetryPolicy(POLICY)).not.toThrow();
    for (const bad of [{ maxAttempts: 0 }, { maxAttempts: 1.5 }, { maxDelayMs: 10 }, { budgetMs: 0 }, { attemptTimeoutMs: 0 }, { baseDelayMs: -1 }]) {
      expect(() => checkRetryPolicy({ ...POLICY, ...bad })).toThrow(RangeError);
    }
  });
});
