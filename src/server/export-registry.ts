// The exports a server offers. The empty name reaches the default export (the first one added),
// as nbd-client -N "" and EXPORT_NAME with no name expect.
import type { BlockDevice } from '../engine/block-device.ts';
import { IomapdError } from '../util/errors.ts';

export interface Export {
  readonly name: string;
  readonly description: string;
  readonly device: BlockDevice;
  /** Only TLS clients may open it (an image volume marked require-tls). */
  readonly requireTls?: boolean;
}

export class ExportRegistry {
  private readonly byName = new Map<string, Export>();
  private defaultName: string | undefined;

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
