// S3ObjectStore over a scripted transport (no network): which failures it retries and how it
// gives up, what each S3 error becomes, the headers of conditional writes, pagination, a
// conditional write that lost to its own ambiguous first attempt, and the probe refusing a store
// that ignores preconditions. Every message is checked for the credentials it must never carry.
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ObjectConflict, type ObjectStore } from '../../src/storage/object-store.ts';
import { probeConditionalWrites } from '../../src/storage/s3/conditional-probe.ts';
import { S3ObjectStore } from '../../src/storage/s3/s3-object-store.ts';
import { IomapdError } from '../../src/util/errors.ts';
import { getOutput, HANG, netError, s3Error, ScriptedTransport, type Step } from './s3-scripted-transport.ts';

const SECRET = 'sEcReTsEcReTsEcReTsEcReTsEcReTsEcReT0001';
const ACCESS = 'AKIATESTACCESSKEY001';
const ENV = {
  AWS_ENDPOINT_URL: 'http://store.example:9000',
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: ACCESS,
  AWS_SECRET_ACCESS_KEY: SECRET,
};
const RETRY = { maxAttempts: 4, baseDelayMs: 1, maxDelayMs: 2, budgetMs: 5_000, attemptTimeoutMs: 50 };
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const putOk = (etag: string) => ({ $metadata: { httpStatusCode: 200 }, ETag: `"${etag}"` });
const headOk = (etag: string, size: number) => ({ $metadata: { httpStatusCode: 200 }, ETag: `"${etag}"`, ContentLength: size });

let transport: ScriptedTransport;
function storeWith(steps: Step[], options: { listPageSize?: number } = {}): S3ObjectStore {
  transport = new ScriptedTransport(steps);
  return S3ObjectStore.create('s3://bucket/images/disk', { env: ENV, retry: RETRY, transport, ...options });
}

afterEach(() => {
  // Every scripted step was used: a test cannot pass by stopping early.
  expect(transport.remaining).toBe(0);
});

async function rejection(promise: Promise<unknown>): Promise<IomapdError> {
  const err = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IomapdError);
  const e = err as IomapdError;
  for (const text of [e.message, String(e), e.stack ?? '', JSON.stringify(e)]) {
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(ACCESS);
  }
  return e;
}

const body = Buffer.from('object body');
const get = (reply: unknown): Step => ({ command: 'GetObjectCommand', input: { Bucket: 'bucket', Key: 'images/disk/k' }, reply });

describe('retries', () => {
  it.each([
    ['503 SlowDown', s3Error('SlowDown', 503)],
    ['500 InternalError', s3Error('InternalError', 500)],
    ['429', s3Error('TooManyRequests', 429)],
    ['400 RequestTimeout', s3Error('RequestTimeout', 400)],
    ['ECONNRESET', netError('ECONNRESET')],
    ['ECONNREFUSED', netError('ECONNREFUSED', 'connect')],
    ['SDK TimeoutError', Object.assign(new Error('Connection timed out after 5000 ms'), { name: 'TimeoutError' })],
    ['a hung request', HANG],
  ])('%s is retried, then the answer is used', async (_name, failure) => {
    const store = storeWith([get(failure), get(failure), get(getOutput(body, md5(body)))]);
    expect(await store.get('k')).toEqual({ body, etag: md5(body) });
  });

  it('a store that keeps failing is STORE_UNAVAILABLE after the attempt budget, naming endpoint, bucket and key', async () => {
    const store = storeWith(Array.from({ length: 4 }, () => get(s3Error('ServiceUnavailable', 503, `try again ${SECRET}`))));
    const err = await rejection(store.get('k'));
    expect(err.code).toBe('STORE_UNAVAILABLE');
    expect(err.message).toMatch(
      /^get of k on s3:\/\/bucket\/images\/disk at http:\/\/store\.example:9000: the store kept failing \(4 attempt\(s\) in \d+ ms, last: ServiceUnavailable \(HTTP 503\)\)$/,
    );
  });
});

describe('errors that retrying cannot fix', () => {
  it.each([
    ['InvalidAccessKeyId', 403, /refused access to bucket 'bucket' \(InvalidAccessKeyId \(HTTP 403\)\): check the credentials/],
    ['SignatureDoesNotMatch', 403, /refused access to bucket 'bucket' \(SignatureDoesNotMatch \(HTTP 403\)\)/],
    ['AccessDenied', 403, /refused access to bucket 'bucket' \(AccessDenied \(HTTP 403\)\)/],
    ['NoSuchBucket', 404, /^bucket 'bucket' does not exist at http:\/\/store\.example:9000/],
  ])('%s is STORE_CONFIG at once, with no credential in the message', async (name, status, message) => {
    // The SDK's message may echo request details; it never reaches ours.
    const store = storeWith([get(s3Error(name, status, `denied for ${ACCESS} signed with ${SECRET}`))]);
    const err = await rejection(store.get('k'));
    expect(err.code).toBe('STORE_CONFIG');
    expect(err.message).toMatch(message);
    expect(err.message).toContain('http://store.example:9000');
  });

  it('connect: an endpoint that never answers is STORE_CONFIG, not a hang', async () => {
    transport = new ScriptedTransport(Array.from({ length: 4 }, () => ({ command: 'ListObjectsV2Command', reply: netError('ECONNREFUSED', 'connect') })));
    const err = await rejection(S3ObjectStore.connect('s3://bucket/images/disk', { env: ENV, retry: RETRY, transport }));
    expect(err.code).toBe('STORE_CONFIG');
    expect(err.message).toMatch(/^http:\/\/store\.example:9000 does not answer for bucket 'bucket' \(4 attempt\(s\) .*ECONNREFUSED\)$/);
    expect(transport.destroyed).toBe(true);
  });

  it('501 NotImplemented is STORE_UNSUPPORTED; 416 is OUT_OF_RANGE; another 4xx is IO', async () => {
    const put: Step = { command: 'PutObjectCommand', reply: s3Error('NotImplemented', 501) };
    let store = storeWith([put]);
    expect((await rejection(store.putIfAbsent('k', body))).code).toBe('STORE_UNSUPPORTED');
    store = storeWith([get(s3Error('InvalidRange', 416))]);
    expect((await rejection(store.get('k', { offset: 100, length: 1 }))).code).toBe('OUT_OF_RANGE');
    store = storeWith([get(s3Error('InvalidArgument', 400))]);
    const err = await rejection(store.get('k'));
    expect(err.code).toBe('IO');
    expect(err.message).toBe('get of k on s3://bucket/images/disk at http://store.example:9000 failed: InvalidArgument (HTTP 400)');
  });
});

describe('conditional writes', () => {
  it('putIfAbsent sends If-None-Match: * and answers the unquoted etag; 412 is ObjectConflict', async () => {
    const put = (reply: unknown): Step => ({
      command: 'PutObjectCommand',
      input: { Bucket: 'bucket', Key: 'images/disk/m', IfNoneMatch: '*', Body: body, ContentLength: body.length },
      reply,
    });
    const store = storeWith([put(putOk('abc')), put(s3Error('PreconditionFailed', 412))]);
    expect(await store.putIfAbsent('m', body)).toBe('abc');
    await expect(store.putIfAbsent('m', body)).rejects.toBeInstanceOf(ObjectConflict);
  });

  it('putIfMatch sends If-Match unquoted, even when given a quoted etag', async () => {
    const put = (reply: unknown): Step => ({ command: 'PutObjectCommand', input: { Key: 'images/disk/m', IfMatch: 'abc' }, reply });
    const store = storeWith([put(putOk('def')), put(s3Error('PreconditionFailed', 412)), put(s3Error('NoSuchKey', 404))]);
    expect(await store.putIfMatch('m', body, '"abc"')).toBe('def');
    await expect(store.putIfMatch('m', body, 'abc')).rejects.toBeInstanceOf(ObjectConflict);
    await expect(store.putIfMatch('m', body, 'abc')).rejects.toBeInstanceOf(ObjectConflict); // absent key
  });

  it('a write that lost to its own ambiguous first attempt counts as won when the etag is our body MD5', async () => {
    const put = (reply: unknown): Step => ({ command: 'PutObjectCommand', input: { IfNoneMatch: '*' }, reply });
    const head = (etag: string): Step => ({ command: 'HeadObjectCommand', input: { Key: 'images/disk/m' }, reply: headOk(etag, body.length) });
    let store = storeWith([put(netError('ECONNRESET')), put(s3Error('PreconditionFailed', 412)), head(md5(body))]);
    expect(await store.putIfAbsent('m', body)).toBe(md5(body));
    store = storeWith([put(HANG), put(s3Error('PreconditionFailed', 412)), head('0123456789abcdef0123456789abcdef')]);
    await expect(store.putIfAbsent('m', body)).rejects.toBeInstanceOf(ObjectConflict);
    // Without an ambiguous attempt, a 412 is a conflict without looking.
    store = storeWith([put(s3Error('PreconditionFailed', 412))]);
    await expect(store.putIfAbsent('m', body)).rejects.toBeInstanceOf(ObjectConflict);
  });
});

describe('reads and listing', () => {
  it('a ranged get sends the Range header; a short answer is OUT_OF_RANGE', async () => {
    const ranged = (reply: unknown): Step => ({ command: 'GetObjectCommand', input: { Range: 'bytes=10-14' }, reply });
    const store = storeWith([ranged(getOutput(Buffer.from('abcde'), 'e1', 'bytes 10-14/20')), ranged(getOutput(Buffer.from('abc'), 'e1', 'bytes 10-12/13'))]);
    expect(await store.get('k', { offset: 10, length: 5 })).toEqual({ body: Buffer.from('abcde'), etag: 'e1' });
    expect((await rejection(store.get('k', { offset: 10, length: 5 }))).code).toBe('OUT_OF_RANGE');
  });

  it('absent keys: get and head answer null, delete succeeds', async () => {
    const store = storeWith([
      get(s3Error('NoSuchKey', 404)),
      { command: 'HeadObjectCommand', reply: s3Error('NotFound', 404) },
      { command: 'DeleteObjectCommand', reply: s3Error('NoSuchKey', 404) },
    ]);
    expect(await store.get('k')).toBeNull();
    expect(await store.head('k')).toBeNull();
    await store.delete('k');
  });

  it('list follows continuation tokens, strips the prefix, and refuses a truncated page without a token', async () => {
    const page = (keys: string[], next?: string): unknown => ({
      Contents: keys.map((k) => ({ Key: `images/disk/${k}`, Size: 1, ETag: '"e"' })),
      IsTruncated: next !== undefined,
      NextContinuationToken: next,
    });
    const store = storeWith(
      [
        { command: 'ListObjectsV2Command', input: { Prefix: 'images/disk/seg/', MaxKeys: 2 }, reply: page(['seg/1', 'seg/2'], 't1') },
        { command: 'ListObjectsV2Command', input: { ContinuationToken: 't1' }, reply: page(['seg/3']) },
        { command: 'ListObjectsV2Command', reply: { Contents: [], IsTruncated: true } },
      ],
      { listPageSize: 2 },
    );
    const keys: string[] = [];
    for await (const o of store.list('seg/')) keys.push(o.key);
    expect(keys).toEqual(['seg/1', 'seg/2', 'seg/3']);
    const err = await rejection((async () => { for await (const _ of store.list('x')); })());
    expect(err.code).toBe('IO');
  });
});

describe('the conditional-write probe', () => {
  const put = (reply: unknown, input?: Record<string, unknown>): Step => ({ command: 'PutObjectCommand', input, reply });
  const del: Step = { command: 'DeleteObjectCommand', reply: { $metadata: { httpStatusCode: 204 } } };

  async function refused(store: ObjectStore, why: RegExp): Promise<void> {
    const err = await rejection(probeConditionalWrites(store));
    expect(err.code).toBe('STORE_UNSUPPORTED');
    expect(err.message).toMatch(why);
  }

  it('refuses a store that ignores If-None-Match, and deletes its probe key', async () => {
    const store = storeWith([put(putOk('e1'), { IfNoneMatch: '*' }), put(putOk('e2'), { IfNoneMatch: '*' }), del]);
    await refused(store, /ignores If-None-Match: \*/);
    expect(transport.sent[2]!.input.Key).toBe(transport.sent[0]!.input.Key);
    expect(String(transport.sent[0]!.input.Key)).toMatch(/^images\/disk\/probe\/conditional-[0-9a-f]{16}$/);
  });

  it('refuses a store that ignores If-Match with a wrong etag', async () => {
    const store = storeWith([put(putOk('e1')), put(s3Error('PreconditionFailed', 412)), put(putOk('e3')), del]);
    await refused(store, /ignores If-Match/);
  });

  it('refuses a store that refuses If-Match with the right etag (quoted comparison)', async () => {
    const lost = s3Error('PreconditionFailed', 412);
    const store = storeWith([put(putOk('e1')), put(lost), put(lost), put(lost, { IfMatch: 'e1' }), del]);
    await refused(store, /refuses If-Match with the object's own etag e1/);
  });

  it('a store that rejects the headers outright (501) is STORE_UNSUPPORTED too, and the key is still deleted', async () => {
    const store = storeWith([put(s3Error('NotImplemented', 501)), del]);
    const err = await rejection(probeConditionalWrites(store));
    expect(err.code).toBe('STORE_UNSUPPORTED');
  });
});

describe('configuration from the environment', () => {
  it('retry settings come from IOMAPD_S3_* and are checked', async () => {
    transport = new ScriptedTransport(Array.from({ length: 2 }, () => get(s3Error('SlowDown', 503))));
    const env = { ...ENV, IOMAPD_S3_MAX_ATTEMPTS: '2', IOMAPD_S3_RETRY_BUDGET_MS: '5000', IOMAPD_S3_ATTEMPT_TIMEOUT_MS: '100' };
    const store = S3ObjectStore.create('s3://bucket/images/disk', { env, transport });
    expect((await rejection(store.get('k'))).message).toContain('2 attempt(s)');
    for (const bad of [{ IOMAPD_S3_MAX_ATTEMPTS: '0' }, { IOMAPD_S3_RETRY_BUDGET_MS: '1e3' }, { IOMAPD_S3_ATTEMPT_TIMEOUT_MS: '-5' }, { IOMAPD_S3_PATH_STYLE: 'yes' }]) {
      const err = await rejection((async () => S3ObjectStore.create('s3://bucket/images/disk', { env: { ...ENV, ...bad }, transport }))());
      expect(err.code).toBe('BAD_ARGUMENT');
      expect(err.message).toContain(Object.keys(bad)[0]);
    }
  });
});

describe('budgets', () => {
  it('connect gives up within 15 s even under a longer service budget (fake clock)', async () => {
    let t = 0;
    const clock = { now: () => t, sleep: async (ms: number) => void (t += ms), random: () => 0.999 };
    // Delays 99, 199, 399, 799, 1598, 3196, 4995 (11285 ms in all); the next 4995 would pass 15 s.
    transport = new ScriptedTransport(Array.from({ length: 8 }, () => ({ command: 'ListObjectsV2Command', reply: netError('ECONNREFUSED', 'connect') })));
    const retry = { maxAttempts: 20, baseDelayMs: 100, maxDelayMs: 5_000, budgetMs: 120_000, attemptTimeoutMs: 1_000 };
    const err = await rejection(S3ObjectStore.connect('s3://bucket/images/disk', { env: ENV, retry, transport, clock }));
    expect(err.code).toBe('STORE_CONFIG');
    expect(err.message).toContain('8 attempt(s) in 11285 ms');
  });

  it('a 404 where no absent key is possible (a listing) is IO, not a silent empty answer', async () => {
    const store = storeWith([{ command: 'ListObjectsV2Command', reply: s3Error('NotFound', 404) }]);
    const err = await rejection((async () => { for await (const _ of store.list('')); })());
    expect(err.code).toBe('IO');
  });
});
