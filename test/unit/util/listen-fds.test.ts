// takeInheritedSockets: which LISTEN_* environments mean "these sockets are yours", and that the
// variables never survive the call.
import { describe, expect, it } from 'vitest';
import { takeInheritedSockets } from '../../../src/util/listen-fds.ts';
import { IomapdError } from '../../../src/util/errors.ts';

const PID = 4242;

function take(env: NodeJS.ProcessEnv): { got: ReturnType<typeof takeInheritedSockets>; left: NodeJS.ProcessEnv } {
  const copy = { ...env, OTHER: 'kept' };
  const got = takeInheritedSockets(copy, PID);
  return { got, left: copy };
}

describe('takeInheritedSockets', () => {
  it('adopts fds 3.. when LISTEN_PID is ours, with the names if given', () => {
    const { got, left } = take({ LISTEN_PID: String(PID), LISTEN_FDS: '3', LISTEN_FDNAMES: 'tcp:unix:other' });
    expect(got).toEqual({ fds: [3, 4, 5], names: ['tcp', 'unix', 'other'] });
    expect(left).toEqual({ OTHER: 'kept' });
  });

  it('ignores sockets meant for another process, and still removes the variables', () => {
    const { got, left } = take({ LISTEN_PID: String(PID + 1), LISTEN_FDS: '1' });
    expect(got).toBeNull();
    expect(left).toEqual({ OTHER: 'kept' });
  });

  it('is null without LISTEN_FDS or LISTEN_PID', () => {
    expect(take({}).got).toBeNull();
    expect(take({ LISTEN_FDS: '1' }).got).toBeNull();
    expect(take({ LISTEN_PID: String(PID) }).got).toBeNull();
  });

  it('refuses a malformed LISTEN_FDS meant for us', () => {
    for (const bad of ['0', '-1', 'x', '1.5', '']) {
      let err: unknown;
      try {
        takeInheritedSockets({ LISTEN_PID: String(PID), LISTEN_FDS: bad }, PID);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(IomapdError);
      expect((err as IomapdError).code).toBe('BAD_ARGUMENT');
    }
  });
});
