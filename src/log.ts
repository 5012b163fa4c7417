import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export type LogFormat = 'auto' | 'json' | 'pretty';

/**
 * Logs on stdout (pino): JSON lines, one event per line, for machines; or,
 * 'pretty' (LOYALTY_LOG_FORMAT, by default when stdout is a terminal), one
 * coloured human line per event. 'auto' here means JSON: settings resolve it.
 */
export function createLogger(level: string, name = 'loyalty-engine', format: LogFormat = 'json'): Logger {
  const options = { name, level, base: { pid: process.pid } };
  if (format !== 'pretty') return pino(options);
  // Synchronous: a fatal line must be written before the process exits.
  return pino(options, pretty({ sync: true, colorize: process.stdout.isTTY === true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }));
}
