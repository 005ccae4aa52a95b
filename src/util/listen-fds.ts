// systemd socket activation (sd_listen_fds(3)): a supervisor (systemd, systemd-socket-activate,
// libnbd's `nbdinfo -- [ CMD ]`) binds the listening sockets and hands them to us as fds 3, 4, ...
// with LISTEN_PID (whom they are for), LISTEN_FDS (how many) and optionally LISTEN_FDNAMES.
// The variables are removed from our environment once read, so that no child inherits them.
import { readFileSync, readlinkSync } from 'node:fs';
import { IomapdError } from './errors.ts';

/** The first fd passed (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

export interface InheritedSockets {
  readonly fds: readonly number[];
  /** LISTEN_FDNAMES split on ':' (empty when not given). */
  readonly names: readonly string[];
}

const VARIABLES = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

/**
 * The sockets passed to this process, or null when none were (no LISTEN_FDS, or LISTEN_PID names
 * another process, as when the variables leaked from a parent). Removes the variables from `env`.
 * A malformed LISTEN_FDS meant for us is an error: serving on a default address instead would
 * surprise whoever set it up.
 */
export function takeInheritedSockets(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): InheritedSockets | null {
  const { LISTEN_PID: forPid, LISTEN_FDS: count, LISTEN_FDNAMES: names } = env;
  for (const v of VARIABLES) delete env[v];
  if (forPid === undefined || count === undefined) return null;
  if (!/^\d+$/.test(forPid) || Number(forPid) !== pid) return null;
  if (!/^\d+$/.test(count) || Number(count) < 1 || Number(count) > 1024) {
    throw new IomapdError('BAD_ARGUMENT', `LISTEN_FDS="${count}" is not a count of sockets passed by socket activation`);
  }
  const fds = Array.from({ length: Number(count) }, (_, i) => LISTEN_FDS_START + i);
  return { fds, names: names === undefined || names === '' ? [] : names.split(':') };
}

/**
 * The filesystem path a Unix listening socket fd is bound to (from /proc/net/unix, matched by the
 * socket's inode), or null if it has none we can find (an abstract or unnamed socket, no /proc).
 */
export function unixSocketPath(fd: number): string | null {
  try {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
    if (m === null) return null;
    // Num RefCount Protocol Flags Type St Inode Path
    for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[6] === m[1] && cols[7] !== undefined && cols[7].startsWith('/')) return cols.slice(7).join(' ');
    }
  } catch {
    // No /proc: the caller shows the fd number instead.
  }
  return null;
}
