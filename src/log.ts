import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout (pino): one event per line, machine-readable for SREs. */
export function createLogger(level: string, name = 'loyalty-engine'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}
