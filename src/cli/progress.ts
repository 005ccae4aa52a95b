// Progress bars for long commands (import, export, check), drawn by cli-progress on stderr so
// stdout stays clean for the command's own output. Shown when stderr is a terminal; `--progress`
// forces it (a line every two seconds when stderr is not a terminal), `--no-progress` hides it.
import cliProgress from 'cli-progress';

export type ProgressMode = 'auto' | 'on' | 'off';

/** Commander's `--progress` / `--no-progress` pair: true, false, or undefined when neither was given. */
export function progressMode(flag: boolean | undefined): ProgressMode {
  return flag === undefined ? 'auto' : flag ? 'on' : 'off';
}

export interface Progress {
  /** `done` units of `total` are finished; `note` replaces the free text after the figures. */
  update(done: number, note?: string): void;
  stop(): void;
}

const SILENT: Progress = { update() {}, stop() {} };

/** 1.5 GiB, 640 KiB, 12 B: the bar's figures. */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${units[i]}`;
}

/**
 * A bar over `total` units, bytes (throughput in bytes per second) or items (per second), or one
 * that draws nothing when the mode and the terminal say so.
 */
export function startProgress(label: string, total: number, unit: 'bytes' | 'items', mode: ProgressMode, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (mode === 'off' || (mode === 'auto' && !stream.isTTY)) return SILENT;
  const fmt = (n: number) => (unit === 'bytes' ? humanBytes(n) : `${Math.round(n)}`);
  const rateUnit = unit === 'bytes' ? '/s' : ' items/s';
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${label} [{bar}] {percentage}% | {doneText} of {totalText} | {rate} | ETA {eta_formatted}{note}`,
      barsize: 30,
      hideCursor: true,
      noTTYOutput: mode === 'on',
      notTTYSchedule: 2000,
      fps: 8,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  const payload = (done: number, note: string) => {
    const seconds = (Date.now() - started) / 1000;
    return { doneText: fmt(done), totalText: fmt(total), rate: seconds > 0 ? `${fmt(done / seconds)}${rateUnit}` : '-', note: note ? ` | ${note}` : '' };
  };
  let note = '';
  bar.start(Math.max(total, 1), 0, payload(0, note));
  return {
    update(done, text) {
      if (text !== undefined) note = text;
      bar.update(Math.min(done, Math.max(total, 1)), payload(done, note));
    },
    stop() {
      bar.stop();
    },
  };
}
