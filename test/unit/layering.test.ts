// The layer order of docs' architecture guide, checked on the real import graph of src/: every
// relative specifier of every .ts file (import, import type, export ... from, import()) as
// TypeScript's own pre-parser reports it. It fails on any import cycle (the cycle is printed) and
// on any import a layer may not make (file, import and rule are printed).
//
// The rules, bottom to top (a layer may always import its own files):
//   util      nothing of ours
//   protocol  util (pure codec: no storage, no server)
//   storage   util
//   fs        storage, util
//   engine    fs, storage, util; never devices, server, control or cli
//   devices   the engine's interface files (ENGINE_INTERFACE), storage, util
//   server    protocol, the engine's interface files, util
//   control   fs, the engine's interface files and engine.ts (the engine's entry point: a daemon
//             adds and drains volumes through it), util, and from server only the daemon's public
//             surface (SERVER_SURFACE: the server object and its export registry), never the
//             connection machinery (negotiation, dispatch, validation, replies ...); request-metrics.ts
//             is on the surface for /metrics
//   client    protocol, util (a small NBD client for import/export: the wire's constants and framing)
//   cli       anything (the composition root)
// Nothing imports cli.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '../../src');

/** The engine files other layers may see: the BlockDevice contract, its sizes and the counters. */
const ENGINE_INTERFACE = new Set(['engine/block-device.ts', 'engine/block-sizes.ts', 'engine/counters.ts']);
/** The server files the control channel may drive. */
const SERVER_SURFACE = new Set(['server/nbd-server.ts', 'server/export-registry.ts', 'server/request-metrics.ts']);

type Layer = 'util' | 'protocol' | 'storage' | 'fs' | 'engine' | 'devices' | 'server' | 'control' | 'client' | 'cli';
const LAYERS: readonly Layer[] = ['util', 'protocol', 'storage', 'fs', 'engine', 'devices', 'server', 'control', 'client', 'cli'];

interface Rule {
  /** What the rule says, printed with a violation. */
  readonly text: string;
  readonly allows: (to: string, toLayer: Layer) => boolean;
}

const layers = (...names: Layer[]) => (_to: string, toLayer: Layer) => names.includes(toLayer);

const RULES: Record<Layer, Rule> = {
  util: { text: 'util imports nothing of ours', allows: layers() },
  protocol: { text: 'protocol may import util only', allows: layers('util') },
  storage: { text: 'storage may import util only', allows: layers('util') },
  fs: { text: 'fs may import storage and util', allows: layers('storage', 'util') },
  engine: { text: 'engine may import fs, storage and util', allows: layers('fs', 'storage', 'util') },
  devices: {
    text: `devices may import storage, util and the engine's interface files (${[...ENGINE_INTERFACE].join(', ')})`,
    allows: (to, toLayer) => toLayer === 'storage' || toLayer === 'util' || ENGINE_INTERFACE.has(to),
  },
  server: {
    text: `server may import protocol, util and the engine's interface files (${[...ENGINE_INTERFACE].join(', ')})`,
    allows: (to, toLayer) => toLayer === 'protocol' || toLayer === 'util' || ENGINE_INTERFACE.has(to),
  },
  control: {
    text:
      `control may import fs, util, the engine's interface files and engine/engine.ts, ` +
      `and from server only ${[...SERVER_SURFACE].join(', ')}`,
    allows: (to, toLayer) =>
      toLayer === 'fs' ||
      toLayer === 'util' ||
      ENGINE_INTERFACE.has(to) ||
      to === 'engine/engine.ts' ||
      SERVER_SURFACE.has(to),
  },
  client: { text: 'client may import protocol and util', allows: layers('protocol', 'util') },
  cli: { text: 'cli may import anything', allows: () => true },
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out.sort();
}

/** Every file of src/ (relative to src/) and the src/ files it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const path of sourceFiles(SRC)) {
    const info = ts.preProcessFile(readFileSync(path, 'utf8'), true, true);
    const targets = info.importedFiles
      .map((f) => f.fileName)
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => relative(SRC, resolve(dirname(path), spec)));
    graph.set(relative(SRC, path), [...new Set(targets)]);
  }
  return graph;
}

function layerOf(file: string): Layer | null {
  const top = file.split('/')[0] as Layer;
  return LAYERS.includes(top) ? top : null;
}

/** Layer violations, one line each: file, import, rule. */
function layerViolations(graph: Map<string, string[]>): string[] {
  const out: string[] = [];
  for (const [from, targets] of graph) {
    const fromLayer = layerOf(from);
    for (const to of targets) {
      const toLayer = layerOf(to);
      if (fromLayer === null || toLayer === null) {
        out.push(`${from} imports ${to}: every file of src/ belongs to one of the layers ${LAYERS.join(', ')}`);
        continue;
      }
      if (toLayer === fromLayer) continue;
      if (toLayer === 'cli') {
        out.push(`${from} imports ${to}: nothing imports cli`);
        continue;
      }
      const rule = RULES[fromLayer];
      if (!rule.allows(to, toLayer)) out.push(`${from} imports ${to}: ${rule.text}`);
    }
  }
  return out;
}

/** Every import cycle, each printed once as a -> b -> ... -> a (one cycle per strongly connected group). */
function importCycles(graph: Map<string, string[]>): string[] {
  // Tarjan's strongly connected components; a component of more than one file (or a file that
  // imports itself) holds a cycle, and a walk inside it finds one to print.
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (v: string): void => {
    indices.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indices.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, indices.get(w)!));
      }
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component);
    }
  };
  for (const v of graph.keys()) if (!indices.has(v)) visit(v);

  const cycles: string[] = [];
  for (const component of components) {
    const members = new Set(component);
    const start = component.sort()[0]!;
    if (component.length === 1 && !(graph.get(start) ?? []).includes(start)) continue;
    cycles.push(cycleThrough(graph, start, members).join(' -> '));
  }
  return cycles.sort();
}

/** A shortest path start -> ... -> start inside one strongly connected component (breadth first). */
function cycleThrough(graph: Map<string, string[]>, start: string, members: Set<string>): string[] {
  const parent = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i]!;
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const back = [v];
        for (let at = v; at !== start; ) back.push((at = parent.get(at)!));
        return [...back.reverse(), start];
      }
      if (!parent.has(w)) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, '(cycle not found)'];
}

describe('layering of src/', () => {
  const graph = importGraph();

  it('reads the import graph (including type-only and multi-line imports)', () => {
    expect(graph.size).toBeGreaterThan(50);
    expect(graph.get('cli/serve.ts')).toContain('server/nbd-server.ts');
    // A multi-line `import { ... } from '../protocol/transmission.ts'`.
    expect(graph.get('server/dispatch.ts')).toContain('protocol/transmission.ts');
    // A type-only import: engine/block-sizes.ts has only `import type { BlockSizes } ...`.
    expect(graph.get('engine/block-sizes.ts')).toEqual(['engine/block-device.ts']);
  });

  it('has no import cycles', () => {
    expect(importCycles(graph), 'import cycles in src/').toEqual([]);
  });

  it('imports only along the layer order', () => {
    expect(layerViolations(graph), 'imports against the layer order (file imports target: rule)').toEqual([]);
  });

  it('the checks catch what they are for (hand-made graphs)', () => {
    const bad = new Map<string, string[]>([
      ['util/a.ts', ['util/b.ts']],
      ['util/b.ts', ['util/a.ts']],
      ['engine/engine.ts', ['devices/memory-device.ts']],
      ['devices/memory-device.ts', ['engine/volume-device.ts']],
      ['engine/volume-device.ts', []],
      ['server/dispatch.ts', ['cli/serve.ts', 'engine/block-device.ts', 'fs/image-store.ts']],
      ['control/daemon-admin.ts', ['server/connection.ts', 'server/nbd-server.ts', 'engine/engine.ts']],
      ['protocol/framer.ts', ['storage/storage.ts']],
      ['cli/serve.ts', []],
      ['engine/block-device.ts', []],
      ['fs/image-store.ts', []],
      ['server/connection.ts', []],
      ['server/nbd-server.ts', []],
      ['storage/storage.ts', []],
    ]);
    expect(importCycles(bad)).toEqual(['util/a.ts -> util/b.ts -> util/a.ts']);
    expect(layerViolations(bad)).toEqual([
      `engine/engine.ts imports devices/memory-device.ts: ${RULES.engine.text}`,
      `devices/memory-device.ts imports engine/volume-device.ts: ${RULES.devices.text}`,
      'server/dispatch.ts imports cli/serve.ts: nothing imports cli',
      `server/dispatch.ts imports fs/image-store.ts: ${RULES.server.text}`,
      `control/daemon-admin.ts imports server/connection.ts: ${RULES.control.text}`,
      `protocol/framer.ts imports storage/storage.ts: ${RULES.protocol.text}`,
    ]);
    const selfLoop = new Map([['fs/a.ts', ['fs/a.ts']]]);
    expect(importCycles(selfLoop)).toEqual(['fs/a.ts -> fs/a.ts']);
  });
});
