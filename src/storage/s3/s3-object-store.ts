// ObjectStore over an S3-compatible bucket (AWS S3, Ceph's radosgw, ...) with the AWS SDK v3.
// Keys are relative to the image's prefix. Conditional writes use If-None-Match: * and If-Match
// with the etag unquoted (radosgw compares If-Match unquoted; AWS accepts both). Transient failures
// are retried by retry-policy.ts; errors become IomapdErrors here with messages that name the
// endpoint, bucket and key, never a credential (summaries from s3-errors.ts).
//
// A conditional write whose attempt failed ambiguously (timeout, reset, 5xx: the store may have
// applied it) and whose retry then lost its precondition may have lost to itself. It counts as won
// when the object's etag is the MD5 of our body (a single-part PUT's etag on radosgw and on AWS
// without KMS); otherwise it is reported as the conflict it appears to be.
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type DeleteObjectCommandOutput,
  type GetObjectCommandOutput,
  type HeadObjectCommandOutput,
  type ListObjectsV2CommandOutput,
  type PutObjectCommandOutput,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { fail, IomapdError, isIomapdError } from '../../util/errors.ts';
import { ObjectConflict, type ObjectBody, type ObjectInfo, type ObjectStore } from '../object-store.ts';
import {
  checkRetryPolicy,
  DEFAULT_RETRY_POLICY,
  realClock,
  RetriesExhausted,
  withRetries,
  type RetryClock,
  type RetryPolicy,
} from './retry-policy.ts';
import { createS3Client, describeEndpoint, pathStyleFrom, retryPolicyFromEnv } from './s3-client-config.ts';
import { classifyS3Error, summarizeS3Error } from './s3-errors.ts';
import { formatS3Url, parseS3Url, type S3ImageUrl } from './s3-url.ts';

type S3Command = PutObjectCommand | GetObjectCommand | HeadObjectCommand | ListObjectsV2Command | DeleteObjectCommand;

/** What the store needs of the SDK client; unit tests inject a strict failing one. */
export interface S3Transport {
  send(command: S3Command, options: { abortSignal: AbortSignal }): Promise<unknown>;
  destroy(): void;
}

export interface S3StoreOptions {
  /** Where endpoint, region, keys and the IOMAPD_S3_* settings come from (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Over the defaults and the environment's IOMAPD_S3_MAX_ATTEMPTS and friends. */
  readonly retry?: Partial<RetryPolicy>;
  readonly clock?: RetryClock;
  /** Keys per ListObjectsV2 page (default and maximum 1000). */
  readonly listPageSize?: number;
  /** Instead of the SDK client (unit tests). */
  readonly transport?: S3Transport;
  /** connect(): the prefix must already hold objects (opening an existing image). */
  readonly requirePrefix?: boolean;
}

const MAX_KEY_BYTES = 1024;
/** The retry budget of connect(), at most: it answers whether the configuration works. */
const CONNECT_BUDGET_MS = 15_000;

export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  readonly url: S3ImageUrl;
  readonly endpoint: string;
  private readonly transport: S3Transport;
  private readonly policy: RetryPolicy;
  private readonly clock: RetryClock;
  private readonly pageSize: number;

  private constructor(url: S3ImageUrl, endpoint: string, transport: S3Transport, policy: RetryPolicy, options: S3StoreOptions) {
    this.url = url;
    this.endpoint = endpoint;
    this.description = `${formatS3Url(url)} at ${endpoint}`;
    this.transport = transport;
    this.policy = policy;
    this.clock = options.clock ?? realClock;
    this.pageSize = options.listPageSize ?? 1000;
  }

  /** The store for `name` (s3://BUCKET/PREFIX), without contacting it. */
  static create(name: string, options: S3StoreOptions = {}): S3ObjectStore {
    const env = options.env ?? process.env;
    const url = parseS3Url(name);
    const policy = { ...DEFAULT_RETRY_POLICY, ...retryPolicyFromEnv(env), ...options.retry };
    try {
      checkRetryPolicy(policy);
    } catch (err) {
      fail('BAD_ARGUMENT', (err as Error).message);
    }
    const pageSize = options.listPageSize ?? 1000;
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
      fail('BAD_ARGUMENT', `list page size ${pageSize} is not in 1..1000`);
    }
    // Everything is checked before the client exists, so a refusal leaves nothing to close.
    const endpoint = describeEndpoint(env);
    const pathStyle = pathStyleFrom(env);
    const transport = options.transport ?? (createS3Client(env, policy, pathStyle) as S3Transport);
    return new S3ObjectStore(url, endpoint, transport, policy, options);
  }

  /**
   * The store for `name`, once the bucket answers a listing of the prefix: a missing bucket, bad
   * credentials or an endpoint that does not answer within the retry budget are STORE_CONFIG here.
   */
  static async connect(name: string, options: S3StoreOptions = {}): Promise<S3ObjectStore> {
    const store = S3ObjectStore.create(name, options);
    try {
      const page = await store.call('connect', '', 'connect', (signal) =>
        store.send<ListObjectsV2CommandOutput>(
          new ListObjectsV2Command({ Bucket: store.url.bucket, Prefix: store.url.prefix, MaxKeys: 1 }),
          signal,
        ),
      );
      if (options.requirePrefix === true && (page.KeyCount ?? page.Contents?.length ?? 0) === 0) {
        fail('STORE_CONFIG', `no image at ${store.description}: nothing is stored under the prefix`);
      }
      return store;
    } catch (err) {
      store.close();
      throw err;
    }
  }

  close(): void {
    this.transport.destroy();
  }

  async putIfAbsent(key: string, body: Buffer): Promise<string> {
    return this.conditionalPut(key, body, { IfNoneMatch: '*' });
  }

  async putIfMatch(key: string, body: Buffer, etag: string): Promise<string> {
    if (etag === '') fail('BAD_ARGUMENT', `putIfMatch of ${key}: empty etag`);
    return this.conditionalPut(key, body, { IfMatch: unquote(etag) });
  }

  async get(key: string, range?: { offset: number; length: number }): Promise<ObjectBody | null> {
    const fullKey = this.fullKey(key);
    if (range !== undefined) {
      const { offset, length } = range;
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
        fail('BAD_ARGUMENT', `get of ${key}: bad range offset ${offset} length ${length}`);
      }
      if (length === 0) {
        const info = await this.head(key);
        if (info === null) return null;
        if (offset > info.size) fail('OUT_OF_RANGE', `get of ${key}: offset ${offset} is past the end (${info.size} bytes)`);
        return { body: Buffer.alloc(0), etag: info.etag };
      }
    }
    const header = range === undefined ? undefined : `bytes=${range.offset}-${range.offset + range.length - 1}`;
    try {
      return await this.call('get', key, 'service', async (signal) => {
        const out = await this.send<GetObjectCommandOutput>(
          new GetObjectCommand({ Bucket: this.url.bucket, Key: fullKey, Range: header }),
          signal,
        );
        if (out.Body === undefined) throw new IomapdError('IO', `get of ${key} on ${this.description}: no body`);
        const bytes = await untilAborted(out.Body.transformToByteArray(), signal);
        const body = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        if (range !== undefined && body.length !== range.length) {
          const last = range.offset + range.length - 1;
          fail('OUT_OF_RANGE', `get of ${key}: bytes ${range.offset}-${last} reach past the end (${out.ContentRange ?? 'short body'})`);
        }
        return { body, etag: unquote(out.ETag) };
      });
    } catch (err) {
      if (err instanceof Absent) return null;
      throw err;
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const fullKey = this.fullKey(key);
    try {
      const out = await this.call('head', key, 'service', (signal) =>
        this.send<HeadObjectCommandOutput>(new HeadObjectCommand({ Bucket: this.url.bucket, Key: fullKey }), signal),
      );
      return { key, size: out.ContentLength ?? 0, etag: unquote(out.ETag) };
    } catch (err) {
      if (err instanceof Absent) return null;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const base = this.url.prefix;
    let token: string | undefined;
    do {
      const page = await this.call('list', prefix, 'service', (signal) =>
        this.send<ListObjectsV2CommandOutput>(
          new ListObjectsV2Command({
            Bucket: this.url.bucket,
            Prefix: base + prefix,
            MaxKeys: this.pageSize,
            ContinuationToken: token,
          }),
          signal,
        ),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(base)) continue;
        yield { key: o.Key.slice(base.length), size: o.Size ?? 0, etag: unquote(o.ETag) };
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      if (page.IsTruncated === true && token === undefined) {
        fail('IO', `list of ${prefix} on ${this.description}: a truncated page without a continuation token`);
      }
    } while (token !== undefined);
  }

  async delete(key: string): Promise<void> {
    const fullKey = this.fullKey(key);
    try {
      await this.call('delete', key, 'service', (signal) =>
        this.send<DeleteObjectCommandOutput>(new DeleteObjectCommand({ Bucket: this.url.bucket, Key: fullKey }), signal),
      );
    } catch (err) {
      if (!(err instanceof Absent)) throw err;
    }
  }

  private async conditionalPut(key: string, body: Buffer, condition: { IfNoneMatch?: string; IfMatch?: string }): Promise<string> {
    const fullKey = this.fullKey(key);
    let ambiguous = false;
    try {
      const out = await this.call('put', key, 'service', async (signal) => {
        try {
          return await this.send<PutObjectCommandOutput>(
            new PutObjectCommand({ Bucket: this.url.bucket, Key: fullKey, Body: body, ContentLength: body.length, ...condition }),
            signal,
          );
        } catch (err) {
          if (signal.aborted || classifyS3Error(err) === 'transient') ambiguous = true;
          throw err;
        }
      });
      return unquote(out.ETag);
    } catch (err) {
      // If-Match on an absent key: some stores answer 404 rather than 412; both mean "lost".
      const lost = err instanceof ObjectConflict || (err instanceof Absent && condition.IfMatch !== undefined);
      if (!lost) throw err instanceof Absent ? new IomapdError('IO', `put of ${key} on ${this.description}: 404`) : err;
      if (ambiguous) {
        const info = await this.head(key);
        const ours = createHash('md5').update(body).digest('hex');
        if (info !== null && info.etag === ours) return info.etag;
      }
      throw new ObjectConflict(key);
    }
  }

  private fullKey(key: string): string {
    if (key === '' || key.startsWith('/')) fail('BAD_ARGUMENT', `bad object key '${key}'`);
    const full = this.url.prefix + key;
    if (Buffer.byteLength(full) > MAX_KEY_BYTES) fail('BAD_ARGUMENT', `object key '${key}' is too long`);
    return full;
  }

  private send<T>(command: S3Command, signal: AbortSignal): Promise<T> {
    return this.transport.send(command, { abortSignal: signal }) as Promise<T>;
  }

  /** Runs one operation under the retry policy and turns what fails into the store's errors. */
  private async call<T>(op: string, key: string, phase: 'connect' | 'service', attempt: (signal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      // Connecting checks configuration: a typo in the endpoint should not take the whole budget.
      const policy = phase === 'connect' ? { ...this.policy, budgetMs: Math.min(this.policy.budgetMs, CONNECT_BUDGET_MS) } : this.policy;
      return await withRetries(attempt, (err) => classifyS3Error(err) === 'transient', policy, this.clock);
    } catch (err) {
      throw this.translate(err, op, key, phase);
    }
  }

  private translate(err: unknown, op: string, key: string, phase: 'connect' | 'service'): Error {
    if (isIomapdError(err)) return err;
    const what = key === '' ? `${op} on ${this.description}` : `${op} of ${key} on ${this.description}`;
    if (err instanceof RetriesExhausted) {
      const tried = `${err.attempts} attempt(s) in ${Math.round(err.elapsedMs)} ms, last: ${summarizeS3Error(err.last)}`;
      return phase === 'connect'
        ? new IomapdError('STORE_CONFIG', `${this.endpoint} does not answer for bucket '${this.url.bucket}' (${tried})`)
        : new IomapdError('STORE_UNAVAILABLE', `${what}: the store kept failing (${tried})`);
    }
    const summary = summarizeS3Error(err);
    switch (classifyS3Error(err)) {
      case 'conflict':
        return new ObjectConflict(key);
      case 'absent':
        // Only get, head, delete and conditional puts expect an absent key and catch this.
        return op === 'get' || op === 'head' || op === 'delete' || op === 'put'
          ? new Absent()
          : new IomapdError('IO', `${what} failed: ${summary}`);
      case 'config':
        return new IomapdError('STORE_CONFIG', configMessage(err, summary, this.endpoint, this.url.bucket));
      case 'unsupported':
        return new IomapdError('STORE_UNSUPPORTED', `${what}: the store does not implement it (${summary})`);
      case 'range':
        return new IomapdError('OUT_OF_RANGE', `${what}: the range is outside the object (${summary})`);
      default:
        return new IomapdError('IO', `${what} failed: ${summary}`);
    }
  }
}

/** Internal: the key is absent (the public methods answer null or succeed). */
class Absent extends Error {}

function configMessage(err: unknown, summary: string, endpoint: string, bucket: string): string {
  const name = (err as { name?: unknown })?.name;
  if (name === 'NoSuchBucket') return `bucket '${bucket}' does not exist at ${endpoint} (${summary})`;
  if (name === 'CredentialsProviderError') {
    return `no credentials for ${endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in the shared credentials file`;
  }
  if (name === 'Error') return `no region for ${endpoint}: set AWS_REGION (S3-compatible stores mostly accept any, e.g. us-east-1)`;
  return `${endpoint} refused access to bucket '${bucket}' (${summary}): check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the shared credentials file), the region and the bucket's permissions`;
}

/** The entity tag without the quotes S3 puts around it. */
function unquote(etag: string | undefined): string {
  if (etag === undefined) return '';
  return etag.length >= 2 && etag.startsWith('"') && etag.endsWith('"') ? etag.slice(1, -1) : etag;
}

/** `promise`, or the signal's reason once it aborts (a body that stalls mid-stream). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
}
