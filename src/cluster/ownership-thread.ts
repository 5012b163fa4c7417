import type { Worker } from 'node:worker_threads';
import { startWorkerThread } from '../runtime/worker-thread.js';
import { deserializeError } from '../api/thread-protocol.js';
import { EngineError } from '../config/errors.js';
import type { Settings } from '../config/settings.js';
import { assert } from '../domain/assert.js';
import type { OwnershipHandlers } from './ownership.js';
import type { OwnershipToMain, OwnershipToWorker, OwnershipWorkerData } from './ownership-protocol.js';

/**
 * Partition ownership (src/cluster/ownership.ts) on a thread of its own: the
 * main thread's side. Why a thread: the main thread feeds every partition's
 * intake, and under a backlog its event loop was busy long enough that an
 * engine's rounds did not run within its leases' validity (a 200,000-event
 * run of the 3-server test: 31 leases let go at once, the engine fenced).
 * On its own event loop and NATS connection, a round waits for NATS only.
 *
 * The handlers run here, on the main thread, where the partitions are
 * consumed: `onAcquired` and `onLost` as the thread reports them, and
 * `onReleasing` awaited, its answer sent back so that the lease is deleted
 * only after the partition is drained and committed.
 *
 * Crash-only: a thread that dies makes `failed` resolve, and the engine stops
 * (its leases expire after the TTL and move).
 */

// Under tsx (development, tests) the entry is TypeScript (startWorkerThread loads it through worker-boot.cjs); built, it is JavaScript.
const defaultWorkerUrl = new URL(import.meta.url.endsWith('.ts') ? './ownership-worker.ts' : './ownership-worker.js', import.meta.url);

export interface OwnershipThreadOptions {
  /** natsUrl resolved. */
  readonly settings: Settings;
  readonly instanceId: string;
  readonly handlers: OwnershipHandlers;
  /** A round that failed (NATS away): the next one tries again. */
  readonly onError?: (error: Error) => void;
  /** A round late or long, past a third of the TTL (now on the ownership thread: NATS slow, or the process starved of CPU). */
  readonly onSlowRound?: (lateMs: number, tookMs: number) => void;
  /** Each confirmed lease renewal, with how long its request took. */
  readonly onRenewed?: (tookMs: number) => void;
  /** A release the main thread could not complete: reported, the lease is kept until the TTL. */
  readonly onReleaseFailed?: (partition: number, error: unknown) => void;
  /** How long a graceful stop (every partition drained, leases deleted) may take before the thread is terminated. */
  readonly stopTimeoutMs?: number;
  /** The thread's entry point (tests). */
  readonly workerUrl?: URL;
}

const STOP_TIMEOUT_MS = 120_000;

export class OwnershipThread {
  /** Resolves with the reason when the thread dies without being asked to stop (after start). */
  readonly failed: Promise<Error>;
  private fail!: (error: Error) => void;
  private worker: Worker | undefined;
  private state: 'new' | 'starting' | 'running' | 'stopping' | 'exited' = 'new';
  private readonly held = new Map<number, number>();
  private readonly givingUp = new Map<number, () => void>();
  private stopped: (() => void) | undefined;

  constructor(private readonly options: OwnershipThreadOptions) {
    this.failed = new Promise((resolve) => (this.fail = resolve));
  }

  /** The partitions held now with their epochs, as the thread last told. */
  owned(): ReadonlyMap<number, number> {
    return new Map(this.held);
  }

  /** Starts the thread; resolves after its first round (won partitions are being taken over), rejects if it cannot start. */
  start(): Promise<void> {
    assert(this.state === 'new', 'the ownership thread was started already');
    this.state = 'starting';
    const workerData: OwnershipWorkerData = { settings: this.options.settings, instanceId: this.options.instanceId };
    const entry = this.options.workerUrl ?? defaultWorkerUrl;
    const worker = startWorkerThread(entry, {
      name: 'loyalty-ownership',
      workerData,
    });
    this.worker = worker;
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (message: OwnershipToMain) => {
        if (message.type === 'started') {
          this.state = 'running';
          resolve();
        } else if (message.type === 'startFailed') {
          reject(new EngineError('ERR_OWNERSHIP_THREAD', `the ownership thread could not start: ${message.error.message}`));
          void worker.terminate();
        } else this.onMessage(worker, message);
      });
      worker.on('error', (error) => {
        if (this.state === 'starting') reject(error);
        else this.died(error);
      });
      worker.on('messageerror', (error) => this.died(error));
      worker.once('exit', (code) => {
        const previous = this.state;
        this.state = 'exited';
        this.stopped?.();
        if (previous === 'starting') reject(new EngineError('ERR_OWNERSHIP_THREAD', `the ownership thread exited while starting (code ${code})`));
        else if (previous === 'running') this.died(new EngineError('ERR_OWNERSHIP_THREAD', `the ownership thread exited unexpectedly (code ${code})`));
      });
    });
  }

  /** Gives a partition up without handing anything over (its takeover failed): its lease is deleted, to be won again later. */
  giveUp(partition: number): Promise<void> {
    if (this.state !== 'running') return Promise.resolve();
    this.held.delete(partition);
    return new Promise<void>((resolve) => {
      this.givingUp.set(partition, resolve);
      this.post({ type: 'giveUp', partition });
    });
  }

  /** Graceful: every held partition drained (onReleasing) and its lease deleted, the heartbeat removed, the thread ended. */
  async stop(): Promise<void> {
    const worker = this.worker;
    if (worker === undefined || this.state === 'exited') return;
    this.state = 'stopping';
    const exited = new Promise<void>((resolve) => (this.stopped = resolve));
    this.post({ type: 'stop' });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.options.stopTimeoutMs ?? STOP_TIMEOUT_MS)));
    if (await Promise.race([exited.then(() => false), timedOut])) await worker.terminate();
    clearTimeout(timer);
  }

  /** A crash, for tests: the thread ends at once, its leases stay until the TTL. */
  async abandon(): Promise<void> {
    this.state = 'stopping';
    await this.worker?.terminate();
  }

  private onMessage(worker: Worker, message: OwnershipToMain): void {
    const { handlers } = this.options;
    switch (message.type) {
      case 'acquired':
        this.held.set(message.partition, message.epoch);
        void Promise.resolve(handlers.onAcquired(message.partition, message.epoch)).catch((error: unknown) => this.options.onError?.(error as Error));
        return;
      case 'releasing':
        void Promise.resolve()
          .then(() => handlers.onReleasing(message.partition, message.epoch))
          .then(
            () => {
              if (this.held.get(message.partition) === message.epoch) this.held.delete(message.partition);
              this.post({ type: 'released', id: message.id });
            },
            (error: unknown) => {
              this.options.onReleaseFailed?.(message.partition, error);
              this.post({ type: 'released', id: message.id, error: { name: 'Error', message: (error as Error)?.message ?? String(error) } });
            },
          );
        return;
      case 'lost':
        if (this.held.get(message.partition) === message.epoch) this.held.delete(message.partition);
        handlers.onLost(message.partition, message.epoch, message.reason);
        return;
      case 'gaveUp':
        this.givingUp.get(message.partition)?.();
        this.givingUp.delete(message.partition);
        return;
      case 'roundFailed':
        this.options.onError?.(deserializeError(message.error));
        return;
      case 'slowRound':
        this.options.onSlowRound?.(message.lateMs, message.tookMs);
        return;
      case 'renewed':
        this.options.onRenewed?.(message.tookMs);
        return;
      case 'stopped':
        return; // the thread closes its port and exits next
      case 'stopFailed':
        this.died(deserializeError(message.error));
        void worker.terminate();
        return;
      default:
        this.died(new EngineError('ERR_OWNERSHIP_THREAD', `the ownership thread sent an unknown message: ${JSON.stringify(message).slice(0, 200)}`));
        void worker.terminate();
    }
  }

  private post(message: OwnershipToWorker): void {
    this.worker?.postMessage(message);
  }

  private died(error: Error): void {
    this.fail(error);
  }
}
