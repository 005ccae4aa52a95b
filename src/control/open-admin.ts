// Which ImageAdmin a CLI command gets: if a live process holds the image lock, that is a daemon
// serving the image and the command goes through its control channel (IMAGE.ctl); otherwise the
// command opens the image itself. A lock left by a dead process is stale and ignored.
import { ImageLock } from '../fs/lock.ts';
import { IomapdError } from '../util/errors.ts';
import type { ImageAdmin } from './admin.ts';
import { controlPath } from './control-server.ts';
import { LocalAdmin } from './local-admin.ts';
import { RemoteAdmin } from './remote-admin.ts';

export async function openAdmin(image: string, readOnly: boolean): Promise<ImageAdmin> {
  const pid = await ImageLock.holder(image);
  if (pid === null) return LocalAdmin.open(image, readOnly);
  return connectDaemon(image, pid);
}

/** The running daemon's channel; NOT_RUNNING when no live process holds the image (`why` says what needed one). */
export async function openDaemon(image: string, why = 'stats come from a running daemon'): Promise<ImageAdmin> {
  const pid = await ImageLock.holder(image);
  if (pid === null) throw new IomapdError('NOT_RUNNING', `no iomapd daemon is serving ${image} (${why})`);
  return connectDaemon(image, pid);
}

async function connectDaemon(image: string, pid: number): Promise<ImageAdmin> {
  const path = controlPath(image);
  try {
    return await RemoteAdmin.connect(path);
  } catch (err) {
    throw new IomapdError('LOCKED', `${image} is open in process ${pid}, which offers no control channel at ${path} (${(err as Error).message})`, { cause: err });
  }
}
