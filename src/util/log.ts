// One pino root logger for the process: readable lines on a terminal, JSON lines otherwise.
import { pino, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function createLogger(level: LevelWithSilent = 'info', stream: NodeJS.WritableStream = process.stdout): Logger {
  const options = { name: 'iomapd', level };
  // pino-pretty as a synchronous stream (no worker thread) only when a person is watching.
  if ((stream as { isTTY?: boolean }).isTTY === true) {
    return pino(options, pretty({ colorize: true, destination: 1, sync: true, translateTime: 'SYS:HH:MM:ss.l' }));
  }
  return pino(options, stream);
}

/** A logger that drops everything, for tests and library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
