import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

const bootUrl = new URL('./worker-boot.cjs', import.meta.url);

/**
 * Starts a worker thread on `entry`. A TypeScript entry (development and
 * tests, under tsx) goes through worker-boot.cjs, which loads it with
 * require (a Node 20 worker gets no ESM loader hooks); a built .js entry
 * starts directly. The HTTP API thread and the ownership thread start this way.
 */
export function startWorkerThread(entry: URL, options: WorkerOptions): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, options);
  return new Worker(bootUrl, { ...options, argv: [fileURLToPath(entry)] });
}
