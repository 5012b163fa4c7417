import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findFreePort } from '../../src/transport/nats-server.js';
import { PROJECT_ROOT, startEngineProcess, tempDataDir } from '../helpers/engine-process.js';
import { startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';

/**
 * The HTTP API runs on its own thread (src/api/thread.ts, src/api/worker.ts).
 * Crash-only, like an actor: if that thread dies, the engine stops. And the one
 * public port still serves what needs the main thread: /health and /metrics.
 */

const READ_TOKEN = 'read-token-0123456789abcdef';

async function runCrash(server: TestNatsServer, mode: 'throw' | 'terminate'): Promise<{ code: number | null; result: any; output: string }> {
  const data = tempDataDir('loyalty-api-thread-');
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/unit/api/fixtures/engine-api-crash.ts', mode], {
      cwd: PROJECT_ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        LOYALTY_NATS_URL: server.url,
        LOYALTY_DATA_DIR: data.path,
        LOYALTY_HTTP_PORT: String(await findFreePort()),
        LOYALTY_PROGRAM_FILE: `${PROJECT_ROOT}/config/programs/simple.yaml`,
        LOYALTY_ACTORS: '1',
        LOYALTY_API_TOKENS: `read:${READ_TOKEN}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    const line = output.split('\n').find((text) => text.startsWith('{"before"'));
    return { code, result: line === undefined ? undefined : JSON.parse(line), output };
  } finally {
    data.remove();
  }
}

describe('the HTTP API thread', () => {
  let server: TestNatsServer;

  beforeAll(async () => {
    server = await startTestNatsServer();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('an uncaught error in the API thread stops the engine, HTTP port closed', async () => {
    const { code, result, output } = await runCrash(server, 'throw');
    expect(code, output).toBe(0);
    expect(result, output).toEqual({ before: 200, failure: { name: 'Error', message: expect.stringMatching(/unknown message/) }, after: 'refused' });
  });

  it('the API thread ending abruptly stops the engine too', async () => {
    const { code, result, output } = await runCrash(server, 'terminate');
    expect(code, output).toBe(0);
    expect(result, output).toEqual({ before: 200, failure: { name: 'EngineError', message: expect.stringMatching(/exited unexpectedly/) }, after: 'refused' });
  });

  it('serves /health and the metrics of both threads on the one port, and stops cleanly', async () => {
    const data = tempDataDir('loyalty-api-thread-');
    const engine = await startEngineProcess({
      natsUrl: server.url,
      dataDir: data.path,
      env: { LOYALTY_API_TOKENS: `read:${READ_TOKEN}`, LOYALTY_ACTORS: '1', LOYALTY_WALLET_CACHE_BYTES_MAX: '1048576' },
    });
    try {
      const base = `http://127.0.0.1:${engine.httpPort}`;
      const health = await fetch(`${base}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', consuming: true, actors: 1 });
      const metrics = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await metrics.text();
      // The main thread's registry (engine metrics, process metrics) and the API thread's own.
      expect(text).toMatch(/^loyalty_acks_total /m);
      expect(text).toMatch(/^process_cpu_seconds_total /m);
      expect(text).toMatch(/^loyalty_http_thread_busy_seconds_total /m);
      // The wallet cache's bound comes from LOYALTY_WALLET_CACHE_BYTES_MAX.
      expect(text).toMatch(/^loyalty_http_wallet_cache_bytes_max 1048576$/m);
      expect(text.match(/^# TYPE loyalty_acks_total /gm)).toHaveLength(1);
      expect((await fetch(`${base}/metrics`)).status).toBe(401);
    } finally {
      expect(await engine.stop()).toBe(0);
      data.remove();
    }
  });
});
