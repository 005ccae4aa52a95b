// Allow-lists: which TLS identities may open which export (--allow EXPORT=ID,ID and --access FILE).
// An export named in no list is open to every client the --tls mode admits; an export named in one
// may be opened only by a TLS client holding one of its identities. The decision itself is made
// once, in the export registry (export-registry.ts); this file only parses and holds the lists.
import { IomapdError } from '../util/errors.ts';

const IDENTITY_KINDS = ['psk', 'cn', 'dns', 'email', 'uri', 'ip'] as const;

export class AccessList {
  static readonly EMPTY = new AccessList(new Map());
  private readonly byExport: ReadonlyMap<string, ReadonlySet<string>>;

  constructor(byExport: ReadonlyMap<string, ReadonlySet<string>>) {
    this.byExport = byExport;
  }

  /** The identities allowed to open `exportName`, or undefined when the export has no list. */
  allowed(exportName: string): ReadonlySet<string> | undefined {
    return this.byExport.get(exportName);
  }

  get exports(): string[] {
    return [...this.byExport.keys()];
  }

  /** A list holding every entry of both (the identities of an export named in both are joined). */
  static merge(a: AccessList, b: AccessList): AccessList {
    const out = new Map<string, Set<string>>();
    for (const list of [a, b]) {
      for (const [name, ids] of list.byExport) {
        const set = out.get(name) ?? new Set<string>();
        for (const id of ids) set.add(id);
        out.set(name, set);
      }
    }
    return new AccessList(out);
  }
}

/** Checks one identity's form: KIND:VALUE with a known kind. */
export function checkIdentity(identity: string, where: string): string {
  const colon = identity.indexOf(':');
  const kind = identity.slice(0, colon);
  if (colon <= 0 || colon === identity.length - 1 || !(IDENTITY_KINDS as readonly string[]).includes(kind)) {
    throw new IomapdError('BAD_ARGUMENT', `${where}: identity ${JSON.stringify(identity)} is not KIND:VALUE with KIND one of ${IDENTITY_KINDS.join(', ')}`);
  }
  return identity;
}

function add(map: Map<string, Set<string>>, name: string, ids: readonly string[], where: string): void {
  if (ids.length === 0) throw new IomapdError('BAD_ARGUMENT', `${where}: export "${name}" names no identity`);
  const set = map.get(name) ?? new Set<string>();
  for (const id of ids) set.add(checkIdentity(id, where));
  map.set(name, set);
}

/** `--allow EXPORT=IDENTITY[,IDENTITY...]`, each given once or more. */
export function parseAllowOptions(values: readonly string[]): AccessList {
  const map = new Map<string, Set<string>>();
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq < 0) throw new IomapdError('BAD_ARGUMENT', `--allow ${JSON.stringify(value)}: expected EXPORT=IDENTITY[,IDENTITY...]`);
    const ids = value.slice(eq + 1).split(',').map((s) => s.trim()).filter((s) => s !== '');
    add(map, value.slice(0, eq), ids, `--allow ${JSON.stringify(value)}`);
  }
  return new AccessList(map);
}

/** An access file: `EXPORT IDENTITY [IDENTITY...]` lines, `#` comments and blank lines ignored. */
export function parseAccessFile(text: string, source: string): AccessList {
  const map = new Map<string, Set<string>>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/#.*$/, '').trim();
    if (line === '') continue;
    const [name, ...ids] = line.split(/\s+/);
    add(map, name!, ids, `${source} line ${i + 1}`);
  }
  return new AccessList(map);
}
