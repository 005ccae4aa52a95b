// Builds the AWS SDK client for an object-store image. Endpoint, region and credentials come from
// the SDK's standard sources (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_ACCESS_KEY_ID
// and AWS_SECRET_ACCESS_KEY, the shared config and credentials files); iomapd adds:
// - path-style addressing (http://host/bucket/key) with IOMAPD_S3_PATH_STYLE=1, off with =0, and
//   by default on for an endpoint that is an IP address or localhost, where virtual-host style
//   (http://bucket.host/key) cannot resolve (radosgw on 127.0.0.1);
// - no SDK retries (retry-policy.ts retries, with its own budget) and per-attempt timeouts;
// - checksums only when an operation requires them: the flexible-checksum headers newer SDKs add to
//   every upload are not understood by every S3-compatible store.
import { S3Client } from '@aws-sdk/client-s3';
import { fail } from '../../util/errors.ts';
import type { RetryPolicy } from './retry-policy.ts';

const RETRY_ENV = {
  IOMAPD_S3_MAX_ATTEMPTS: 'maxAttempts',
  IOMAPD_S3_RETRY_BUDGET_MS: 'budgetMs',
  IOMAPD_S3_ATTEMPT_TIMEOUT_MS: 'attemptTimeoutMs',
} as const;

/** Retry settings from IOMAPD_S3_MAX_ATTEMPTS, IOMAPD_S3_RETRY_BUDGET_MS, IOMAPD_S3_ATTEMPT_TIMEOUT_MS. */
export function retryPolicyFromEnv(env: NodeJS.ProcessEnv): Partial<RetryPolicy> {
  const out: Partial<Record<(typeof RETRY_ENV)[keyof typeof RETRY_ENV], number>> = {};
  for (const [name, field] of Object.entries(RETRY_ENV) as [keyof typeof RETRY_ENV, (typeof RETRY_ENV)[keyof typeof RETRY_ENV]][]) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    if (!/^[1-9]\d{0,8}$/.test(v)) fail('BAD_ARGUMENT', `${name} must be a positive integer, not '${v}'`);
    out[field] = Number(v);
  }
  return out;
}

/** The endpoint as it may be printed: scheme, host, port and path, never userinfo or a query. */
export function describeEndpoint(env: NodeJS.ProcessEnv): string {
  const raw = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  if (raw === undefined || raw === '') return 'the default AWS S3 endpoint';
  try {
    const u = new URL(raw);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return fail('STORE_CONFIG', 'AWS_ENDPOINT_URL is not a URL');
  }
}

export function pathStyleFrom(env: NodeJS.ProcessEnv): boolean {
  const v = env.IOMAPD_S3_PATH_STYLE;
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  if (v !== undefined && v !== '') fail('BAD_ARGUMENT', `IOMAPD_S3_PATH_STYLE must be 1 or 0, not '${v}'`);
  const raw = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  if (raw === undefined || raw === '') return false;
  try {
    const host = new URL(raw).hostname;
    return host === 'localhost' || /^\d+\.\d+\.\d+\.\d+$/.test(host) || host.startsWith('[');
  } catch {
    return false;
  }
}

/**
 * The client for `env` (process.env in production). Endpoint, region and keys found in `env` are
 * passed explicitly, so a caller's `env` is the whole story; what it lacks the SDK looks up in its
 * other sources (shared config files, profiles, instance metadata).
 */
export function createS3Client(env: NodeJS.ProcessEnv, policy: RetryPolicy, pathStyle: boolean): S3Client {
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  const endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  const sessionToken = env.AWS_SESSION_TOKEN;
  return new S3Client({
    ...(region !== undefined && region !== '' ? { region } : {}),
    ...(endpoint !== undefined && endpoint !== '' ? { endpoint } : {}),
    ...(accessKeyId && secretAccessKey
      ? { credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } }
      : {}),
    forcePathStyle: pathStyle,
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: Math.min(policy.attemptTimeoutMs, 5_000),
      requestTimeout: policy.attemptTimeoutMs,
    },
  });
}
