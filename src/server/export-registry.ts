// The exports a server offers. The empty name reaches the default export (the first one added),
// as nbd-client -N "" and EXPORT_NAME with no name expect.
//
// Who may open which export is decided here, once, by open(): LIST, INFO, GO, EXPORT_NAME and the
// meta-context options all ask it. A refused export looks exactly like an unknown one, except
// that in the spec's selective TLS mode (--tls on) a plain client asking for an export marked
// requireTls is told to start TLS (ERR_TLS_REQD).
import type { BlockDevice } from '../engine/block-device.ts';
import { IomapdError } from '../util/errors.ts';
import { AccessList } from './access.ts';

export interface Export {
  readonly name: string;
  readonly description: string;
  readonly device: BlockDevice;
  /** Reachable only over TLS (an image volume's require-tls flag; set by whoever adds the export). */
  readonly requireTls?: boolean;
}

/** --tls: off (STARTTLS unsupported), on (the spec's selective mode), require (TLS-only mode). */
export type TlsMode = 'off' | 'on' | 'require';
export const TLS_MODES: readonly TlsMode[] = ['off', 'on', 'require'];

/** The server's TLS mode and its current allow-lists (swapped whole on reload, so read per decision). */
export interface ExportPolicy {
  readonly tlsMode: TlsMode;
  access(): AccessList;
}

export const OPEN_POLICY: ExportPolicy = { tlsMode: 'off', access: () => AccessList.EMPTY };

/** What the registry knows of a client: whether TLS is up, and its identities (none without TLS). */
export interface ClientView {
  readonly tls: boolean;
  readonly identities: readonly string[];
}

export type Admission =
  | { readonly ok: true; readonly export: Export }
  /** `export` is set when the name exists and the client was refused it (logged by the caller). */
  | { readonly ok: false; readonly answer: 'unknown' | 'tls-required'; readonly export?: Export; readonly reason: string };

export class ExportRegistry {
  private readonly byName = new Map<string, Export>();
  private defaultName: string | undefined;
  /** Set once by the server's owner before it listens. */
  policy: ExportPolicy = OPEN_POLICY;
  /** `serve --dirty-bitmap NAME`: the one qemu:dirty-bitmap: context any export offers (backup-contexts.ts). */
  onlyDirtyBitmap: string | undefined = undefined;

  add(exp: Export): void {
    if (this.byName.has(exp.name)) throw new IomapdError('ALREADY_EXISTS', `export "${exp.name}" already exists`);
    this.byName.set(exp.name, exp);
    this.defaultName ??= exp.name;
  }

  /**
   * Stops offering an export (the control channel removes deleted volumes). Connections already
   * in transmission keep their device; the default moves to the first export left.
   */
  remove(name: string): Export | undefined {
    const exp = this.byName.get(name);
    if (exp === undefined) return undefined;
    this.byName.delete(name);
    if (this.defaultName === name) this.defaultName = this.byName.keys().next().value;
    return exp;
  }

  /** The export a client named; "" is the default export. */
  find(name: string): Export | undefined {
    const exact = this.byName.get(name);
    if (exact !== undefined || name !== '') return exact;
    return this.defaultName === undefined ? undefined : this.byName.get(this.defaultName);
  }

  /** The one access decision: may `client` open the export it names `name`? */
  open(name: string, client: ClientView): Admission {
    const exp = this.find(name);
    if (exp === undefined) return { ok: false, answer: 'unknown', reason: 'no such export' };
    const allowed = this.policy.access().allowed(exp.name);
    if (!client.tls && (exp.requireTls === true || allowed !== undefined)) {
      // Never ERR_TLS_REQD without TLS on offer (the spec's NOTLS mode), nor for an allow-listed export.
      const answer = exp.requireTls === true && this.policy.tlsMode !== 'off' && allowed === undefined ? 'tls-required' : 'unknown';
      return { ok: false, answer, export: exp, reason: 'the export requires TLS' };
    }
    if (allowed !== undefined && !client.identities.some((id) => allowed.has(id))) {
      return { ok: false, answer: 'unknown', export: exp, reason: 'the identity is not on the export\'s allow-list' };
    }
    return { ok: true, export: exp };
  }

  /** The exports `client` may open, for LIST. */
  visible(client: ClientView): Export[] {
    return this.list().filter((e) => this.open(e.name, client).ok);
  }

  list(): Export[] {
    return [...this.byName.values()];
  }

  /** Flushes and closes every device once (several exports may share nothing, or a device). */
  async closeAll(): Promise<void> {
    const devices = new Set(this.list().map((e) => e.device));
    for (const device of devices) {
      if (!device.readOnly && device.capabilities.flush) await device.flush();
      await device.close();
    }
  }
}
