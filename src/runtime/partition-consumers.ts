import { assert } from '../domain/assert.js';
import type { RestoredPosition } from '../actors/protocol.js';
import type { Logger } from '../log.js';
import type { ActorRunner, Ingest } from '../routing/ingest.js';
import { actorOfPartition } from '../routing/partitioner.js';

/**
 * Cluster mode's intake (docs/cluster.md): one durable consumer, one Ingest
 * (its own ack watermark) and one pull intake per partition this instance
 * holds a lease of. Driven by PartitionOwnership's handlers:
 *
 * - `acquire`: the partition's actor fences its changelog with the lease's
 *   epoch and restores it (snapshot + tail), which gives the published
 *   watermark (every input up to it committed and its outcomes acknowledged);
 *   the consumer is recreated to deliver after it, so what the old owner
 *   committed but may not have published comes again as duplicates, whose
 *   first outcomes are published again (same message ids); intake starts.
 *   When a step fails (JetStream not answering in time after a server's
 *   death), nothing was consumed: the actor lets the partition go and
 *   `onAcquireFailed` gives the lease up, so it is won again (a new epoch,
 *   a new fence, a new restore) at a later tick instead of stopping the
 *   engine.
 * - `release` (handed over): intake stops, every batch in flight is
 *   committed and acked, the actor lets the partition go; the lease is
 *   deleted after, by the ownership.
 * - `lost` (the lease may be someone else's): intake stops at once and the
 *   rest runs as a release. A batch in flight commits only if its changelog
 *   append lands before the new owner's fence (then the new owner restores
 *   it); after the fence it is refused and nothing of it is written.
 *
 * Operations of one partition run one after another in the order asked;
 * `acquire` does not wait for them (the ownership tick must go on renewing
 * the other leases while a partition restores).
 */
export interface PartitionConsumersOptions {
  readonly actors: number;
  /** The partition's actor: fence, restore, serve (ActorPool.ownPartition). */
  readonly own: (actor: number, partition: number, epoch: number) => Promise<RestoredPosition>;
  readonly releaseActor: (actor: number, partition: number) => Promise<void>;
  /** Recreates the partition's durable consumer to deliver its messages after `watermark`. */
  readonly resetConsumer: (partition: number, watermark: number) => Promise<void>;
  readonly createIngest: (partition: number) => Ingest;
  /** Starts pulling the partition's consumer into `ingest`. */
  readonly startIntake: (partition: number, ingest: Ingest) => { close(): Promise<void> };
  /** A partition could not be handed over (its batches did not commit): the engine must stop. */
  readonly onFatal: (partition: number, error: unknown) => void;
  /**
   * A partition could not be taken (the fence, the restore, the consumer or
   * the intake failed: JetStream not answering after a server's death). The
   * actor let it go (when it had it) and nothing was consumed; the lease is to
   * be given up, so that it is won again, with a new epoch, at a later tick.
   */
  readonly onAcquireFailed: (partition: number, step: AcquireStep, error: unknown) => void;
  readonly onOwned?: (position: RestoredPosition, consumerMs: number) => void;
  /** The partitions consuming changed (one taken, or one stopping): e.g. the wallet subjects to answer. */
  readonly onChange?: (consuming: readonly number[]) => void;
  readonly logger: Logger;
}

export type AcquireStep = 'restore' | 'consumer' | 'intake';

interface Running {
  readonly epoch: number;
  readonly ingest: Ingest;
  readonly intake: { close(): Promise<void> };
}

export class PartitionConsumers {
  private readonly running = new Map<number, Running>();
  private readonly chains = new Map<number, Promise<void>>();
  /** Partitions asked for and not yet consuming (restoring), with their epochs. */
  private readonly acquiring = new Map<number, number>();

  constructor(private readonly options: PartitionConsumersOptions) {
    assert(options.actors > 0, 'at least one actor');
  }

  /** The partitions consuming now. */
  consuming(): number[] {
    return [...this.running.keys()].sort((a, b) => a - b);
  }

  get restoring(): number {
    return this.acquiring.size;
  }

  get ackPending(): number {
    let pending = 0;
    for (const { ingest } of this.running.values()) pending += ingest.ackPending;
    return pending;
  }

  get consumerPending(): number {
    let pending = 0;
    for (const { ingest } of this.running.values()) pending += ingest.consumerPending;
    return pending;
  }

  pendingEvents(actor: number): number {
    let pending = 0;
    for (const [partition, { ingest }] of this.running) if (actorOfPartition(partition, this.options.actors) === actor) pending += ingest.pendingEvents(actor);
    return pending;
  }

  /**
   * The actors as the partitions' Ingests see them. Every Ingest batches for
   * the actor of its partition and sends only while the actor has room; room
   * freed by one partition's batch is offered to every partition of that
   * actor (starting after the last one served, so none starves), or a
   * partition that found the actor full would wait for its own next message.
   */
  runner(actors: ActorRunner): ActorRunner {
    let next = 0;
    return {
      actors: actors.actors,
      hasRoom: (actor) => actors.hasRoom(actor),
      batchesInFlight: (actor) => actors.batchesInFlight(actor),
      runBatch: (actor, buffer) =>
        actors.runBatch(actor, buffer).finally(() => {
          const running = [...this.running];
          for (let offset = 0; offset < running.length; offset++) {
            const [partition, { ingest }] = running[(next + offset) % running.length]!;
            if (actorOfPartition(partition, this.options.actors) !== actor) continue;
            ingest.poke(actor);
            if (!actors.hasRoom(actor)) {
              next = (next + offset + 1) % running.length;
              return;
            }
          }
        }),
    };
  }

  /** Takes the partition won with `epoch`, in the background (see the class comment). */
  acquire(partition: number, epoch: number): void {
    this.acquiring.set(partition, epoch);
    let step: AcquireStep = 'restore';
    let owned = false;
    const actor = actorOfPartition(partition, this.options.actors);
    void this.then(partition, async () => {
      if (this.acquiring.get(partition) !== epoch) return; // lost or released before its turn
      const restored = await this.options.own(actor, partition, epoch);
      owned = true;
      step = 'consumer';
      const consumerStarted = performance.now();
      await this.options.resetConsumer(partition, restored.publishedWatermark);
      const consumerMs = performance.now() - consumerStarted;
      step = 'intake';
      const ingest = this.options.createIngest(partition);
      this.running.set(partition, { epoch, ingest, intake: this.options.startIntake(partition, ingest) });
      this.forgetAcquiring(partition, epoch);
      this.options.onOwned?.(restored, consumerMs);
      this.options.onChange?.(this.consuming());
    }).catch(async (error: unknown) => {
      this.forgetAcquiring(partition, epoch);
      // Nothing was consumed: the actor lets the partition go, and its next owner (maybe this instance again) restores it.
      if (owned) await this.options.releaseActor(actor, partition).catch((inner: unknown) => this.options.onFatal(partition, inner));
      this.options.onAcquireFailed(partition, step, error);
    });
  }

  /**
   * Only this attempt's entry: the partition may have been lost and won again
   * (a new epoch) while this attempt restored, and erasing the new attempt's
   * entry would make it return at its guard, leaving a leased partition that
   * nothing consumes (seen in the bench under a backlog).
   */
  private forgetAcquiring(partition: number, epoch: number): void {
    if (this.acquiring.get(partition) === epoch) this.acquiring.delete(partition);
  }

  /** Hands the partition over: waits for its acquisition, stops intake, commits and acks what is in flight, lets the actor go. */
  release(partition: number): Promise<void> {
    this.acquiring.delete(partition);
    return this.then(partition, () => this.stop(partition));
  }

  /** The lease may have moved: stop taking the partition's messages now; the rest as a release, in the background. */
  lost(partition: number, reason: string): void {
    this.acquiring.delete(partition);
    const running = this.running.get(partition);
    if (running !== undefined) void running.intake.close();
    this.options.logger.warn({ partition, epoch: running?.epoch, reason }, 'partition lost: intake stopped; a batch still in flight commits only if it lands before the new owner fences the changelog');
    void this.release(partition).catch((error: unknown) => this.options.onFatal(partition, error));
  }

  /** Runs `action` while no partition's batch is in flight (a program switch). */
  async exclusive<T>(action: () => Promise<T>): Promise<T> {
    const ingests = [...this.running.values()].map((running) => running.ingest);
    const nested = ingests.reduce<() => Promise<T>>((inner, ingest) => () => ingest.exclusive(inner), action);
    return nested();
  }

  /** Releases every partition still running (the engine's stop, after the ownership released its leases). */
  async close(): Promise<void> {
    this.acquiring.clear();
    await Promise.all([...new Set([...this.running.keys(), ...this.chains.keys()])].map((partition) => this.release(partition)));
  }

  private async stop(partition: number): Promise<void> {
    const running = this.running.get(partition);
    if (running === undefined) return;
    this.running.delete(partition);
    this.options.onChange?.(this.consuming());
    await running.intake.close();
    await running.ingest.drain();
    await this.options.releaseActor(actorOfPartition(partition, this.options.actors), partition);
    this.options.logger.info({ partition, epoch: running.epoch }, 'partition released: its batches committed and acked');
  }

  private then(partition: number, step: () => Promise<void>): Promise<void> {
    const next = (this.chains.get(partition) ?? Promise.resolve()).then(step);
    const settled = next.catch(() => undefined);
    this.chains.set(partition, settled);
    void settled.then(() => {
      if (this.chains.get(partition) === settled) this.chains.delete(partition);
    });
    return next;
  }
}
