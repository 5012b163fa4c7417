import type { Worker } from 'node:worker_threads';
import { startWorkerThread } from '../runtime/worker-thread.js';
import { EngineError } from '../config/errors.js';
import type { Settings } from '../config/settings.js';
import type { Logger } from '../log.js';
import type { TokenTable } from './auth.js';
import {
  serializeError,
  startError,
  type ApiWorkerData,
  type CallMethod,
  type MainThreadHandlers,
  type ProgramState,
  type ToMain,
  type ToWorker,
} from './thread-protocol.js';

/**
 * The HTTP API (and the NATS services) on a thread of its own, so that HTTP
 * and the engine's ingest no longer share one event loop: the main thread
 * keeps pulling, batching and acking, the API thread serves requests from its
 * own LMDB read handle and NATS connection (src/api/worker.ts). This class is
 * the main thread's side: it starts the thread, answers its calls (health,
 * metrics, program activation), tells it about a new program, and stops it.
 *
 * Crash-only, like an actor: if the thread dies (an uncaught error, or an exit
 * nobody asked for), `failed` resolves and the engine stops.
 */

// Under tsx (development, tests) the worker is TypeScript (startWorkerThread loads it through worker-boot.cjs); built, it is JavaScript.
const defaultWorkerUrl = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);

export interface ApiThreadOptions {
  /** natsUrl resolved. */
  readonly settings: Settings;
  readonly tokens: TokenTable;
  readonly program: ProgramState;
  readonly handlers: MainThreadHandlers;
  readonly logger: Logger;
  /** The worker's entry point (tests start stand-ins). */
  readonly workerUrl?: URL;
  /** How long a graceful stop may take before the thread is terminated. */
  readonly stopTimeoutMs?: number;
}

const STOP_TIMEOUT_MS = 20_000;

export class ApiThread {
  /** Resolves with the reason when the thread dies without being asked to stop (after start). */
  readonly failed: Promise<Error>;
  private fail!: (error: Error) => void;
  private worker: Worker | undefined;
  private listening = 0;
  private state: 'new' | 'starting' | 'running' | 'stopping' | 'exited' = 'new';
  private exited: Promise<number> | undefined;
  private failure: Error | undefined;

  constructor(private readonly options: ApiThreadOptions) {
    this.failed = new Promise((resolve) => (this.fail = resolve));
  }

  /** The HTTP port the thread listens on (0 before it does). */
  get port(): number {
    return this.listening;
  }

  /** The worker (tests). */
  get thread(): Worker | undefined {
    return this.worker;
  }

  /** Starts the thread; resolves once it listens and its NATS services are up, rejects if it cannot start. */
  start(): Promise<void> {
    if (this.state !== 'new') throw new EngineError('ERR_API_THREAD', 'the API thread was started already');
    this.state = 'starting';
    const { settings, tokens, program } = this.options;
    const workerData: ApiWorkerData = { settings, tokens: tokens.toData(), program };
    const entry = this.options.workerUrl ?? defaultWorkerUrl;
    const worker = startWorkerThread(entry, {
      name: 'loyalty-api',
      workerData,
      // Every request allocates short-lived objects (a decoded member, its wallet, a parsed
      // event): as for the actors, a young generation larger than V8's default (48 MB)
      // keeps them out of the old one.
      resourceLimits: { maxYoungGenerationSizeMb: 64 },
    });
    this.worker = worker;
    this.exited = new Promise((resolve) => worker.once('exit', resolve));
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (message: ToMain) => {
        switch (message.type) {
          case 'ready':
            this.listening = message.port;
            this.state = 'running';
            resolve();
            return;
          case 'startFailed':
            reject(startError(message.error));
            return;
          case 'call':
            this.answer(worker, message.id, message.method, message.args);
            return;
          default:
            this.died(new EngineError('ERR_API_THREAD', `the API thread sent an unknown message: ${JSON.stringify(message).slice(0, 200)}`));
            void worker.terminate();
        }
      });
      worker.on('error', (error) => {
        if (this.state === 'starting') reject(error);
        else this.died(error);
      });
      worker.on('messageerror', (error) => this.died(error));
      worker.once('exit', (code) => {
        const previous = this.state;
        this.state = 'exited';
        if (previous === 'starting') reject(new EngineError('ERR_API_THREAD', `the API thread exited while starting (code ${code})`));
        else if (previous === 'running') this.died(new EngineError('ERR_API_THREAD', `the API thread exited unexpectedly (code ${code})`));
      });
    });
  }

  /** Hands a newly activated program to the thread (before the activation call answers). */
  setProgram(state: ProgramState): void {
    this.post({ type: 'program', state });
  }

  /** Cluster mode: the partitions this instance consumes now; the thread answers their wallet subjects only. */
  setPartitions(owned: readonly number[]): void {
    this.post({ type: 'partitions', owned: [...owned] });
  }

  /** Graceful: the thread stops its NATS services, closes HTTP (in-flight requests finish), its NATS connection and its store. */
  async stop(): Promise<void> {
    const worker = this.worker;
    if (worker === undefined || this.state === 'exited') return;
    if (this.state === 'starting' || this.state === 'new') {
      this.state = 'stopping';
      await worker.terminate();
      return;
    }
    if (this.state === 'stopping') {
      await this.exited;
      return;
    }
    this.state = 'stopping';
    this.post({ type: 'stop' });
    const timeoutMs = this.options.stopTimeoutMs ?? STOP_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited!.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.options.logger.warn({ timeoutMs }, 'the API thread did not stop in time; terminating it');
      await worker.terminate();
    }
  }

  private died(error: Error): void {
    if (this.failure !== undefined || this.state === 'stopping') return;
    this.failure = error;
    this.options.logger.fatal({ err: error }, 'the HTTP API thread failed; stopping the engine');
    this.fail(error);
  }

  private post(message: ToWorker): void {
    if (this.worker === undefined || this.state === 'exited') return;
    this.worker.postMessage(message);
  }

  private answer(worker: Worker, id: number, method: CallMethod, args: readonly unknown[]): void {
    const handler = this.options.handlers[method] as ((...values: unknown[]) => unknown) | undefined;
    const reply = (message: ToWorker) => {
      if (this.state !== 'exited') worker.postMessage(message);
    };
    if (handler === undefined) {
      reply({ type: 'result', id, ok: false, error: { name: 'Error', message: `unknown call ${String(method)}` } });
      return;
    }
    let result: unknown;
    try {
      result = handler(...args);
    } catch (error) {
      reply({ type: 'result', id, ok: false, error: serializeError(error) });
      return;
    }
    void Promise.resolve(result).then(
      (value) => reply({ type: 'result', id, ok: true, value }),
      (error: unknown) => reply({ type: 'result', id, ok: false, error: serializeError(error) }),
    );
  }
}
