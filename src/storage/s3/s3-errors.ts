// What an error from the AWS SDK (or the network under it) means for an object store, and a
// summary of it that is safe to print. Summaries carry the S3 error code, the HTTP status and the
// network error code only, never the SDK's message: some stores echo request details (the access
// key id, the string to sign) there.

export type S3FailureKind =
  | 'conflict' // a precondition failed: If-None-Match / If-Match lost (412)
  | 'absent' // no such key (404)
  | 'config' // no bucket, bad credentials, wrong region: retrying will not help
  | 'transient' // 5xx, throttling, timeouts, resets: retry with backoff
  | 'unsupported' // the store does not implement what was asked (501)
  | 'range' // the requested range is not inside the object (416)
  | 'other';

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

const CONFIG_NAMES = new Set([
  'NoSuchBucket',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'Forbidden',
  'InvalidBucketName',
  'AuthorizationHeaderMalformed',
  'PermanentRedirect',
  'RequestTimeTooSkewed',
  'InvalidToken',
  'ExpiredToken',
  'CredentialsProviderError',
]);

const TRANSIENT_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'ConditionalRequestConflict', // AWS: a concurrent conditional write; retrying resolves it
  'TimeoutError',
]);

const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
]);

function fields(err: unknown): { name: string; status: number | undefined; code: string } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as SdkErrorShape;
  const name = typeof e.name === 'string' ? e.name : typeof e.Code === 'string' ? e.Code : '';
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  const code = typeof e.code === 'string' ? e.code : '';
  return { name, status, code };
}

export function classifyS3Error(err: unknown): S3FailureKind {
  const { name, status, code } = fields(err);
  if (status === 412 || name === 'PreconditionFailed') return 'conflict';
  if (name === 'NoSuchKey' || (status === 404 && name === 'NotFound')) return 'absent';
  if (CONFIG_NAMES.has(name) || status === 403 || status === 301) return 'config';
  if (name === 'NotImplemented' || status === 501) return 'unsupported';
  if (name === 'InvalidRange' || status === 416) return 'range';
  if (TRANSIENT_NAMES.has(name) || TRANSIENT_NETWORK_CODES.has(code)) return 'transient';
  if (status === 429 || status === 409 || (status !== undefined && status >= 500)) return 'transient';
  // A connection that closed before any HTTP status (a reset the SDK did not label).
  if (status === undefined && /socket hang up|ECONNRESET|EPIPE/.test(String((err as Error)?.message))) return 'transient';
  if (name === 'Error' && /Region is missing/.test(String((err as Error)?.message))) return 'config';
  return 'other';
}

/** `NoSuchBucket (HTTP 404)`, `ECONNREFUSED`, ...: safe to print, names no secret. */
export function summarizeS3Error(err: unknown): string {
  const { name, status, code } = fields(err);
  if (name === 'AttemptTimeout') return String((err as Error).message);
  const parts = [name !== '' && name !== 'Error' ? name : code !== '' ? code : 'error'];
  if (code !== '' && code !== parts[0]) parts.push(code);
  if (status !== undefined) parts.push(`(HTTP ${status})`);
  return parts.join(' ');
}
