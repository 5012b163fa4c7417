import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { assertHttpPortFree, httpListenError } from '../../../src/api/port-check.js';
import { ConfigError, EngineError } from '../../../src/config/errors.js';
import { Engine } from '../../../src/engine.js';
import { loadProgramFile } from '../../../src/config/program-file.js';
import { loadSettings } from '../../../src/config/settings.js';
import { createLogger } from '../../../src/log.js';

let holder: Server | undefined;

async function holdPort(): Promise<number> {
  holder = createServer();
  await new Promise<void>((resolve) => holder!.listen({ host: '127.0.0.1', port: 0 }, resolve));
  return (holder.address() as { port: number }).port;
}

afterEach(async () => {
  await new Promise<void>((resolve) => (holder === undefined ? resolve() : holder.close(() => resolve())));
  holder = undefined;
});

describe('the HTTP port check', () => {
  it('passes for a free port and for 0, and frees the port again', async () => {
    const port = await holdPort();
    await new Promise<void>((resolve) => holder!.close(() => resolve()));
    holder = undefined;
    await assertHttpPortFree('127.0.0.1', port);
    await assertHttpPortFree('127.0.0.1', port); // the probe closed it
    await assertHttpPortFree('127.0.0.1', 0);
  });

  it('names LOYALTY_HTTP_PORT when the port is busy', async () => {
    const port = await holdPort();
    const error = await assertHttpPortFree('127.0.0.1', port).then(() => undefined, (failure: unknown) => failure);
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).code).toBe('ERR_HTTP_PORT_IN_USE');
    expect((error as Error).message).toContain(`127.0.0.1:${port}`);
    expect((error as Error).message).toContain('LOYALTY_HTTP_PORT');
  });

  it('makes an address the host does not have a configuration error naming both settings', () => {
    const error = httpListenError('10.255.255.1', 8080, Object.assign(new Error('listen EADDRNOTAVAIL'), { code: 'EADDRNOTAVAIL' }));
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).fields[0]).toContain('LOYALTY_HTTP_HOST/LOYALTY_HTTP_PORT');
  });

  it('stops the engine start before it connects to NATS', async () => {
    const port = await holdPort();
    // A NATS URL nothing listens on: had the engine got that far, the error would be ERR_NATS_CONNECT.
    const settings = loadSettings({ LOYALTY_HTTP_PORT: String(port), LOYALTY_NATS_URL: 'nats://127.0.0.1:1', LOYALTY_DATA_DIR: '/nonexistent/never-created' });
    const engine = new Engine({ settings, program: loadProgramFile(settings.programFile), logger: createLogger('silent') });
    const error = await engine.start().then(() => undefined, (failure: unknown) => failure);
    await engine.stop();
    expect((error as EngineError).code).toBe('ERR_HTTP_PORT_IN_USE');
  });
});
