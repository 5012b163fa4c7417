import { Piscina } from 'piscina';
import { EngineError } from '../config/errors.js';
import { assert } from '../domain/assert.js';
import type { Program } from '../domain/program.js';
import type { BatchResult, SweepResult } from './actor.js';
import type { BudgetLayout } from './budgets.js';
import type { PriorityResult } from './priority.js';
import type { ActorReply, ActorTask, ActorWorkerData, RestoredPosition } from './protocol.js';

/**
 * T actors, each a Piscina pool of exactly one thread, so every member's state
 * lives in one thread (the single writer) and a pool's FIFO queue keeps each
 * actor's batches in order.
 */

// Under tsx (development, tests) the worker is TypeScript; built, it is JavaScript.
const workerFile = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);

export interface ActorPoolOptions {
  readonly actors: number;
  readonly batchesInFlightMax: number;
  /** Each actor thread's V8 old-generation limit (settings.actorHeapMaxMb). */
  readonly heapMaxMb?: number;
  readonly workerData: (actorIndex: number) => ActorWorkerData;
}

interface Job {
  readonly task: ActorTask;
  readonly transferList: ArrayBuffer[] | undefined;
  readonly resolve: (reply: ActorReply) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Why a queue of our own: Piscina puts a task it cannot hand to a busy worker
 * back at the tail of its queue (unless stricterFIFO), so two batches of one
 * actor could swap places and a member's events would be applied out of
 * order. Each actor's tasks wait here, in order, and Piscina never gets more
 * than the worker can start at once.
 */
export class ActorPool {
  private readonly pools: Piscina[];
  private readonly queues: Job[][];
  private readonly running: number[];
  /** Batches queued or running per actor. */
  private readonly inFlight: number[];
  /** Why an actor's thread died, once it has: every later task for it is refused with this. */
  private readonly deaths: (EngineError | undefined)[];

  constructor(private readonly options: ActorPoolOptions) {
    assert(options.actors > 0, 'at least one actor');
    this.inFlight = new Array(options.actors).fill(0);
    this.running = new Array(options.actors).fill(0);
    this.queues = Array.from({ length: options.actors }, () => []);
    this.deaths = new Array(options.actors).fill(undefined);
    this.pools = Array.from(
      { length: options.actors },
      (_, actorIndex) =>
        new Piscina({
          filename: workerFile.href,
          minThreads: 1,
          maxThreads: 1,
          // The next batch is applied while the previous one's commit is flushing.
          concurrentTasksPerWorker: options.batchesInFlightMax,
          stricterFIFO: true,
          // 'sync' atomics park the thread between tasks, which would stall its
          // NATS connection and LMDB flushes; actors keep handles open.
          atomics: 'disabled',
          idleTimeout: Number.POSITIVE_INFINITY,
          workerData: options.workerData(actorIndex),
          recordTiming: false,
          // Each batch allocates a few MB of short-lived objects (decoded events,
          // new member states): a larger young generation keeps them out of the
          // old one and cuts GC time roughly in half.
          resourceLimits: { maxYoungGenerationSizeMb: 64, maxOldGenerationSizeMb: options.heapMaxMb },
          closeTimeout: 60_000,
        }),
    );
    // An uncaught error kills the thread: Piscina rejects its tasks in flight and
    // emits 'error', which with no listener would take the whole process down
    // with a bare stack trace. The actor's memory went with the thread, so it
    // takes no more work: its next task fails, and the engine stops (exit 1).
    this.pools.forEach((pool, actor) =>
      pool.on('error', (error: unknown) => {
        this.deaths[actor] ??= new EngineError('ERR_ACTOR_THREAD', `actor ${actor}'s thread died (ERR_ACTOR_THREAD): ${(error as Error)?.message ?? String(error)}`, { cause: error });
        for (const job of this.queues[actor]!.splice(0)) job.reject(this.deaths[actor]);
      }),
    );
  }

  get actors(): number {
    return this.pools.length;
  }

  /** Batches sent to the actor and not yet answered. */
  batchesInFlight(actor: number): number {
    return this.inFlight[actor]!;
  }

  hasRoom(actor: number): boolean {
    return this.inFlight[actor]! < this.options.batchesInFlightMax;
  }

  /** Waits until every worker thread has initialised (opened the store, connected to NATS); each one's priority, by actor. */
  async ready(): Promise<PriorityResult[]> {
    // The worker module resolves its handler after initialising; a first task waits for that.
    const replies = await Promise.all(this.pools.map((_, actor) => this.submit(actor, { kind: 'ping' })));
    return replies.map((reply) => {
      assert(reply.kind === 'ready', 'actor answered a ping with another reply');
      return reply.priority;
    });
  }

  async runBatch(actor: number, buffer: ArrayBuffer): Promise<BatchResult> {
    const task: ActorTask = { kind: 'batch', buffer };
    this.inFlight[actor]! += 1;
    try {
      const reply = await this.submit(actor, task, [buffer]);
      assert(reply.kind === 'batch', 'actor answered a batch with another reply');
      return reply.result;
    } finally {
      this.inFlight[actor]! -= 1;
    }
  }

  async runSweep(actor: number, nowMs: number, limit: number): Promise<SweepResult> {
    const reply = await this.submit(actor, { kind: 'sweep', nowMs, limit });
    assert(reply.kind === 'sweep', 'actor answered a sweep with another reply');
    return reply.result;
  }

  /** Cluster mode: gives the partition's actor the partition won with `epoch` (fence, restore); where its consumer resumes. */
  async ownPartition(actor: number, partition: number, epoch: number): Promise<RestoredPosition> {
    const reply = await this.submit(actor, { kind: 'own', partition, epoch });
    assert(reply.kind === 'owned', 'actor answered an own with another reply');
    return reply.restored;
  }

  /** Cluster mode: the actor stops serving the partition; call once its batches are drained. */
  async releasePartition(actor: number, partition: number): Promise<void> {
    const reply = await this.submit(actor, { kind: 'release', partition });
    assert(reply.kind === 'ok', 'actor answered a release with another reply');
  }

  /** Call only while no batch is in flight (the engine pauses intake), so every actor switches at the same point. */
  async setProgram(program: Program, budgets: BudgetLayout): Promise<void> {
    await Promise.all(this.pools.map((_, actor) => this.submit(actor, { kind: 'program', program, budgets })));
  }

  /** Lets every actor finish publishing, then stops the threads. */
  async close(): Promise<void> {
    await Promise.allSettled(this.pools.map((_, actor) => this.submit(actor, { kind: 'close' })));
    await Promise.allSettled(this.pools.map((pool) => pool.destroy()));
  }

  /** Queues a task behind the actor's earlier ones; tasks start in submission order. */
  private submit(actor: number, task: ActorTask, transferList?: ArrayBuffer[]): Promise<ActorReply> {
    const death = this.deaths[actor];
    if (death !== undefined) return Promise.reject(death);
    return new Promise<ActorReply>((resolve, reject) => {
      this.queues[actor]!.push({ task, transferList, resolve, reject });
      this.pump(actor);
    });
  }

  private pump(actor: number): void {
    const queue = this.queues[actor]!;
    while (this.running[actor]! < this.options.batchesInFlightMax && queue.length > 0) {
      const job = queue.shift()!;
      this.running[actor]! += 1;
      const run = this.pools[actor]!.run(job.task, job.transferList === undefined ? {} : { transferList: job.transferList }) as Promise<ActorReply>;
      run.then(job.resolve, job.reject).finally(() => {
        this.running[actor]! -= 1;
        this.pump(actor);
      });
    }
  }
}
