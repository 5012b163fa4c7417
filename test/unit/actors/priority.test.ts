import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { currentThreadId, lowerThreadPriority, threadNice, type PriorityResult } from '../../../src/actors/priority.js';
import { loadSettings } from '../../../src/config/settings.js';

// The module under test, loaded in a worker thread through tsx's require API (a bare Worker has no TypeScript loader).
const MODULE = fileURLToPath(new URL('../../../src/actors/priority.ts', import.meta.url));
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { require: tsxRequire } = require('tsx/cjs/api');
const { lowerThreadPriority } = tsxRequire(workerData.module, workerData.module);
parentPort.postMessage(lowerThreadPriority(workerData.increment));
setTimeout(() => {}, 60_000);
`;

const linux = process.platform === 'linux';

describe.runIf(linux)('actor thread priority', () => {
  it('adds to the nice value of one thread, not of the process', async () => {
    const mainThread = currentThreadId();
    const before = threadNice(mainThread);
    const nice = Math.min(19, before + 7);
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module: MODULE, increment: 7 } });
    try {
      const result = await new Promise<PriorityResult>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      expect(result).toMatchObject({ applied: true, nice });
      const workerThread = (result as { threadId: number }).threadId;
      expect(workerThread).not.toBe(mainThread);
      expect(threadNice(workerThread)).toBe(nice);
      expect(threadNice(mainThread)).toBe(before);
    } finally {
      await worker.terminate();
    }
  });

  it('finds the calling thread: on the main thread, its id is the process id', () => {
    expect(currentThreadId()).toBe(process.pid);
  });

  it('does nothing at nice 0 and refuses values outside 0 to 19', () => {
    const before = threadNice(process.pid);
    expect(lowerThreadPriority(0)).toEqual({ applied: false, reason: 'disabled (LOYALTY_ACTOR_NICE=0)' });
    expect(lowerThreadPriority(20)).toMatchObject({ applied: false, reason: expect.stringContaining('0 to 19') });
    expect(lowerThreadPriority(-1)).toMatchObject({ applied: false });
    expect(lowerThreadPriority(2.5)).toMatchObject({ applied: false });
    expect(threadNice(process.pid)).toBe(before);
  });
});

describe('LOYALTY_ACTOR_NICE', () => {
  it('defaults to 0 (off) and takes 0 to 19', () => {
    expect(loadSettings({ LOYALTY_ACTORS: '2' }).actorNice).toBe(0);
    expect(loadSettings({ LOYALTY_ACTORS: '2', LOYALTY_ACTOR_NICE: '10' }).actorNice).toBe(10);
    expect(loadSettings({ LOYALTY_ACTORS: '2', LOYALTY_ACTOR_NICE: '0' }).actorNice).toBe(0);
    expect(loadSettings({ LOYALTY_ACTORS: '2', LOYALTY_ACTOR_NICE: '19' }).actorNice).toBe(19);
    expect(() => loadSettings({ LOYALTY_ACTORS: '2', LOYALTY_ACTOR_NICE: '20' })).toThrow(/LOYALTY_ACTOR_NICE/);
    expect(() => loadSettings({ LOYALTY_ACTORS: '2', LOYALTY_ACTOR_NICE: '-5' })).toThrow(/LOYALTY_ACTOR_NICE/);
  });
});
