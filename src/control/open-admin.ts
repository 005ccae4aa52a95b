// Which ImageAdmin a CLI command gets: if a daemon serves the image, the command goes through its
// control channel; otherwise the command opens the image itself.
// - A file image: a live process holding the image lock is that daemon (IMAGE.ctl); a lock left by
//   a dead process is stale and ignored.
// - A bucket image has no local lock: a daemon on this host answers on its control socket
//   (controlPath); a socket nobody answers is a dead daemon's. A daemon on another host is not
//   seen from here: a read-write command then takes the writer role from it (it is fenced).
import { ImageLock } from '../fs/lock.ts';
import { isObjectImageName } from '../fs/image-name.ts';
import type { ObjectImageOptions } from '../fs/open-image.ts';
import { IomapdError } from '../util/errors.ts';
import type { ImageAdmin } from './admin.ts';
import { controlPath } from './control-server.ts';
import { LocalAdmin } from './local-admin.ts';
import { RemoteAdmin } from './remote-admin.ts';

export async function openAdmin(image: string, readOnly: boolean, objectOptions: ObjectImageOptions = {}): Promise<ImageAdmin> {
  if (isObjectImageName(image)) return (await objectDaemon(image)) ?? LocalAdmin.open(image, readOnly, objectOptions);
  const pid = await ImageLock.holder(image);
  if (pid === null) return LocalAdmin.open(image, readOnly);
  return connectDaemon(image, pid);
}

/** The running daemon's channel; NOT_RUNNING when no live process holds the image (`why` says what needed one). */
export async function openDaemon(image: string, why = 'stats come from a running daemon'): Promise<ImageAdmin> {
  if (isObjectImageName(image)) {
    const admin = await objectDaemon(image);
    if (admin === null) throw new IomapdError('NOT_RUNNING', `no iomapd daemon on this host is serving ${image} (${why}; looked for ${controlPath(image)})`);
    return admin;
  }
  const pid = await ImageLock.holder(image);
  if (pid === null) throw new IomapdError('NOT_RUNNING', `no iomapd daemon is serving ${image} (${why})`);
  return connectDaemon(image, pid);
}

/** The control channel of a daemon on this host serving a bucket image, or null when none answers. */
async function objectDaemon(image: string): Promise<ImageAdmin | null> {
  try {
    return await RemoteAdmin.connect(controlPath(image));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') return null;
    throw err;
  }
}

async function connectDaemon(image: string, pid: number): Promise<ImageAdmin> {
  const path = controlPath(image);
  try {
    return await RemoteAdmin.connect(path);
  } catch (err) {
    throw new IomapdError('LOCKED', `${image} is open in process ${pid}, which offers no control channel at ${path} (${(err as Error).message})`, { cause: err });
  }
}
