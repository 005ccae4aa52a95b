// The error registry (src/util/errors.ts), its NBD errnos (src/server/errno.ts) and docs/ERRORS.md
// stay in step: every code is documented once, with the errno the server really answers.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NbdErr } from '../../../src/protocol/constants.ts';
import { nbdErrnoFor } from '../../../src/server/errno.ts';
import { ErrorCodes, type ErrorCode } from '../../../src/util/errors.ts';

const doc = readFileSync(new URL('../../../docs/ERRORS.md', import.meta.url), 'utf8');
const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| `(E[A-Z]+)` \|/gm)].map((m) => [m[1]!, m[2]!] as const);

describe('docs/ERRORS.md', () => {
  it('documents every code exactly once, and nothing else', () => {
    expect(rows.map(([code]) => code).sort()).toEqual(Object.keys(ErrorCodes).sort());
  });

  it.each(rows)('%s is answered %s', (code, errno) => {
    expect(nbdErrnoFor(code as ErrorCode)).toBe(NbdErr[errno as keyof typeof NbdErr]);
  });
});
