// How the S3 client is configured from the environment: path-style addressing (asked for, or
// automatic where virtual-host style cannot work) and the endpoint as it may be printed.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { describeEndpoint, pathStyleFrom } from '../../src/storage/s3/s3-client-config.ts';
import { NODE, REPO_ROOT } from '../support/daemon.ts';

describe('pathStyleFrom', () => {
  it.each([
    [{ AWS_ENDPOINT_URL: 'http://127.0.0.1:7480' }, true],
    [{ AWS_ENDPOINT_URL: 'http://localhost:9000' }, true],
    [{ AWS_ENDPOINT_URL: 'http://[::1]:9000' }, true],
    [{ AWS_ENDPOINT_URL: 'https://s3.example.com' }, false],
    [{ AWS_ENDPOINT_URL: 'https://s3.example.com', AWS_ENDPOINT_URL_S3: 'http://10.0.0.5' }, true],
    [{}, false],
    [{ AWS_ENDPOINT_URL: 'https://s3.example.com', IOMAPD_S3_PATH_STYLE: '1' }, true],
    [{ AWS_ENDPOINT_URL: 'http://127.0.0.1:7480', IOMAPD_S3_PATH_STYLE: '0' }, false],
    [{ IOMAPD_S3_PATH_STYLE: 'true' }, true],
  ])('%j -> %s', (env, expected) => {
    expect(pathStyleFrom(env)).toBe(expected);
  });

  it('refuses a value it does not understand', () => {
    expect(() => pathStyleFrom({ IOMAPD_S3_PATH_STYLE: 'yes' })).toThrow(/IOMAPD_S3_PATH_STYLE must be 1 or 0/);
  });
});

describe('describeEndpoint', () => {
  it('prints scheme, host, port and path only', () => {
    expect(describeEndpoint({ AWS_ENDPOINT_URL: 'http://127.0.0.1:7480' })).toBe('http://127.0.0.1:7480');
    expect(describeEndpoint({ AWS_ENDPOINT_URL: 'https://user:s3cr3t@s3.example.com/base?token=s3cr3t' })).toBe('https://s3.example.com/base');
    expect(describeEndpoint({})).toBe('the default AWS S3 endpoint');
    expect(() => describeEndpoint({ AWS_ENDPOINT_URL: 'not a url s3cr3t' })).toThrow(/^AWS_ENDPOINT_URL is not a URL$/);
  });
});

describe('a client with no region or no credentials anywhere', () => {
  // In a child process with an empty environment and HOME, so that no shared config file, profile
  // or AWS_* variable of this machine can supply them.
  const script = `
    const { S3ObjectStore } = await import(${JSON.stringify(join(REPO_ROOT, 'src/storage/s3/s3-object-store.ts'))});
    const retry = { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 2, budgetMs: 3000, attemptTimeoutMs: 1000 };
    for (const env of [
      { AWS_ENDPOINT_URL: 'http://127.0.0.1:1', AWS_ACCESS_KEY_ID: 'AKIAONLYKEY', AWS_SECRET_ACCESS_KEY: 'onlySecret' },
      { AWS_ENDPOINT_URL: 'http://127.0.0.1:1', AWS_REGION: 'us-east-1' },
    ]) {
      try { await S3ObjectStore.connect('s3://bucket/p', { env, retry }); console.log('connected'); }
      catch (e) { console.log(e.code + ': ' + e.message); }
    }`;

  it('is STORE_CONFIG saying what to set, before any request', async () => {
    const home = mkdtempSync(join(tmpdir(), 'iomapd-s3-home-'));
    try {
      const { stdout } = await promisify(execFile)(NODE, ['--input-type=module', '-e', script], {
        env: { PATH: process.env.PATH, HOME: home },
        timeout: 20_000,
      });
      expect(stdout.trim().split('\n')).toEqual([
        'STORE_CONFIG: no region for http://127.0.0.1:1: set AWS_REGION (S3-compatible stores mostly accept any, e.g. us-east-1)',
        'STORE_CONFIG: no credentials for http://127.0.0.1:1: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in the shared credentials file',
      ]);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }, 30_000);
});
