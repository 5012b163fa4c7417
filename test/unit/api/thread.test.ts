import { afterEach, describe, expect, it } from 'vitest';
import { loadApiTokens } from '../../../src/api/auth.js';
import type { ProgramCheck } from '../../../src/api/context.js';
import { ApiThread } from '../../../src/api/thread.js';
import { EngineError } from '../../../src/config/errors.js';
import { createLogger } from '../../../src/log.js';
import { waitFor } from '../../helpers/engine-process.js';
import { FakeEngine, testSettings } from './fake-context.js';

/**
 * The main thread's side of the HTTP API thread (src/api/thread.ts), against a
 * stand-in worker (fixtures/api-thread-standin.mjs) that speaks the protocol
 * and misbehaves on purpose: the engine must hear of every way the thread can
 * die, and a graceful stop must not count as one.
 */

const standin = new URL('./fixtures/api-thread-standin.mjs', import.meta.url);
const program = new FakeEngine().program;

function threadFor(mode: string): { thread: ApiThread; activations: string[]; failedWith: () => Error | undefined } {
  // The worker's environment is a copy of ours when it starts.
  process.env.STANDIN_MODE = mode;
  const activations: string[] = [];
  const thread = new ApiThread({
    settings: testSettings({ httpHost: '127.0.0.1' }),
    tokens: loadApiTokens({ apiTokens: 'read:read-token-0123456789abcdef' }),
    program: { program, atMs: 1, source: 'file' },
    logger: createLogger('silent'),
    workerUrl: standin,
    stopTimeoutMs: 200,
    handlers: {
      health: () => ({ ok: true, detail: { port: 4_000 } }),
      metrics: () => {
        throw new Error('no metrics here');
      },
      activateProgram: async (text): Promise<ProgramCheck> => {
        activations.push(text);
        return { ok: false, errors: [text] };
      },
    },
  });
  let failure: Error | undefined;
  void thread.failed.then((error) => (failure = error));
  return { thread, activations, failedWith: () => failure };
}

describe('the HTTP API thread, seen from the main thread', () => {
  let running: ApiThread | undefined;

  afterEach(async () => {
    await running?.stop();
    running = undefined;
    delete process.env.STANDIN_MODE;
  });

  it('starts once the thread is ready, answers its calls (errors included), hands it new programs, and stops it without calling that a failure', async () => {
    const { thread, activations, failedWith } = threadFor('ready');
    running = thread;
    await thread.start();
    // The stand-in got health (port 4000) and the metrics call's error, and said so in its port.
    expect(thread.port).toBe(4_001);
    thread.setProgram({ program, atMs: 2, source: 'api' });
    await waitFor(() => activations.length === 1, 10_000, 'the stand-in to see the program');
    expect(activations).toEqual([`seen ${program.id} api`]);
    await thread.stop();
    await new Promise((resolve) => setImmediate(resolve));
    expect(failedWith()).toBeUndefined();
    await thread.stop(); // twice is fine
  });

  it('fails the engine when the thread throws (an uncaught error)', async () => {
    const { thread, failedWith } = threadFor('throw-on-program');
    running = thread;
    await thread.start();
    thread.setProgram({ program, atMs: 2, source: 'api' });
    const error = await thread.failed;
    expect(error.message).toBe('stand-in crashed');
    expect(failedWith()).toBe(error);
    await thread.stop(); // the engine stops next: nothing left to stop here
  });

  it('fails the engine when the thread exits without being asked to', async () => {
    const { thread } = threadFor('exit-on-program');
    running = thread;
    await thread.start();
    thread.setProgram({ program, atMs: 2, source: 'api' });
    const error = await thread.failed;
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).code).toBe('ERR_API_THREAD');
    expect(error.message).toMatch(/exited unexpectedly \(code 0\)/);
  });

  it('refuses to start when the thread reports a start failure, or throws before it is ready', async () => {
    const failing = threadFor('start-fails');
    running = failing.thread;
    const error = await failing.thread.start().then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(EngineError);
    // A code outside the registry (a raw system code) becomes the thread's own; its text stays in the message.
    expect((error as EngineError).code).toBe('ERR_API_THREAD');
    expect((error as Error).message).toMatch(/HTTP API thread could not start: listen EADDRINUSE/);

    const throwing = threadFor('throw-at-start');
    running = throwing.thread;
    await expect(throwing.thread.start()).rejects.toThrow(/cannot even start/);
    await new Promise((resolve) => setImmediate(resolve));
    expect(failing.failedWith()).toBeUndefined();
    expect(throwing.failedWith()).toBeUndefined();
  });

  it('terminates a thread that does not stop in time', async () => {
    const { thread, failedWith } = threadFor('stubborn');
    running = thread;
    await thread.start();
    await thread.stop();
    await new Promise((resolve) => setImmediate(resolve));
    expect(failedWith()).toBeUndefined();
  });
});
