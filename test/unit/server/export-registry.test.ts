// The export registry as the control channel changes it: removing exports, and where the default
// export ("") goes when its export is removed.
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../../src/devices/memory-device.ts';
import { ExportRegistry } from '../../../src/server/export-registry.ts';

const exp = (name: string) => ({ name, description: '', device: new MemoryDevice({ size: 4096 }) });

describe('ExportRegistry.remove', () => {
  it('removes by exact name; the default moves to the first export left, then to the next one added', () => {
    const r = new ExportRegistry();
    r.add(exp('a'));
    r.add(exp('b'));
    expect(r.find('')?.name).toBe('a');
    expect(r.remove('')).toBeUndefined(); // "" names no export of its own
    expect(r.remove('a')?.name).toBe('a');
    expect(r.find('a')).toBeUndefined();
    expect(r.find('')?.name).toBe('b');
    expect(r.remove('b')?.name).toBe('b');
    expect(r.find('')).toBeUndefined();
    r.add(exp('c'));
    expect(r.find('')?.name).toBe('c');
    expect(r.list().map((e) => e.name)).toEqual(['c']);
  });
});
