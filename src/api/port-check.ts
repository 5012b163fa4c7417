import { createServer } from 'node:net';
import { ConfigError, EngineError } from '../config/errors.js';

/**
 * Checks that the HTTP API can listen on host:port, before the engine starts
 * NATS and its actors: a busy port is a configuration problem, and finding it
 * after everything else started (and is stopped again) costs seconds and hides
 * the cause among the start-up lines. The API thread binds the port again
 * later; a process that takes it in between gets the same error from there.
 */
export async function assertHttpPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return; // any free port: nothing to collide with
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (error) => reject(httpListenError(host, port, error)));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/** The engine's error for a failed HTTP listen: a busy port names the setting to change. */
export function httpListenError(host: string, port: number, error: unknown): Error {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === 'EADDRINUSE') {
    return new EngineError(
      'ERR_HTTP_PORT_IN_USE',
      `the HTTP API cannot listen on ${host}:${port}: another process holds the port. Stop it, or set LOYALTY_HTTP_PORT to a free port (0 picks one)`,
      { cause: error },
    );
  }
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EACCES') {
    return new ConfigError('settings', [`LOYALTY_HTTP_HOST/LOYALTY_HTTP_PORT: cannot listen on ${host}:${port} (${String(code)}: ${(error as Error).message})`]);
  }
  return error instanceof Error ? error : new Error(String(error));
}
