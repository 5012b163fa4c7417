import type { NatsConnection } from '@nats-io/nats-core';
import { jetstream } from '@nats-io/jetstream';
import { workerData } from 'piscina';
import { readBatch } from '../routing/batch-buffer.js';
import { createLogger, type Logger } from '../log.js';
import { LmdbStore } from '../store/lmdb.js';
import { connectNats } from '../transport/connect.js';
import { publishDeadLetter } from '../transport/dead-letters.js';
import { type OutcomeMessage } from '../transport/outcomes.js';
import { PubAckRouter } from '../transport/pub-acks.js';
import { subjectsFor } from '../transport/subjects.js';
import { assert } from '../domain/assert.js';
import { Actor } from './actor.js';
import { ClusterPartitions } from './cluster-partitions.js';
import { SharedBudgets } from './budgets.js';
import { lowerThreadPriority } from './priority.js';
import type { ActorReply, ActorTask, ActorWorkerData } from './protocol.js';
import type { OutboxKey } from '../store/types.js';

/**
 * The Piscina worker around one Actor: one per pool, one pool per actor, so a
 * member's state always lives in this thread. It owns a NATS connection to
 * publish its own outcomes and dead letters, so the main thread only routes
 * and acks.
 */
const data = workerData as ActorWorkerData;

async function initialize(): Promise<(task: ActorTask) => Promise<ActorReply>> {
  const { settings } = data;
  // First: everything this thread does from here on, opening the store included, runs at the actors' priority.
  const priority = lowerThreadPriority(settings.actorNice);
  const subjects = subjectsFor(settings.subjectPrefix);
  const store = new LmdbStore({ dataDir: settings.dataDir, mapSizeBytes: settings.lmdbMapSizeBytes, partitions: settings.partitions });
  const nc = await connectNats({ ...settings, natsUrl: data.natsUrl }, `loyalty-actor-${data.actorIndex}`);
  const js = jetstream(nc);
  let budgets = new SharedBudgets(data.budgets);
  const ports = {
    // Through a getter: an activated program brings a new budget layout.
    get budgets() {
      return budgets;
    },
  };
  const actor = new Actor(store, data.program, {
    actorIndex: data.actorIndex,
    actors: settings.actors,
    ports,
    partitions: settings.partitions,
    memberCacheMax: settings.memberCacheMax,
    payloadBytesMax: settings.payloadBytesMax,
    subjects,
    bootId: data.bootId,
    ownsPartitions: settings.cluster ? 'given' : 'all',
  });
  const logger = createLogger(settings.logLevel, undefined, settings.logFormat).child({ thread: 'actor', actor: data.actorIndex });
  const cluster = settings.cluster ? await ClusterPartitions.open(nc, store, actor, data, logger) : undefined;
  const publisher = new OutcomePublisher(
    new PubAckRouter(nc, (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix),
    (key) => actor.outboxPublished(key),
    settings.outcomePublishTimeoutMs,
    settings.outcomeBatchesUnconfirmedMax,
    new PublishTrouble(logger, settings.outcomeStreamName, settings.outcomeBatchesUnconfirmedMax),
  );
  // Cluster mode: a release waits for this publisher, and a new owner publishes its restored outbox through it.
  cluster?.attachOutcomes({ publish: (outcomes, onAcknowledged) => publisher.publish(outcomes, undefined, onAcknowledged), settled: (timeoutMs) => publisher.settled(timeoutMs) });
  // Published outbox entries are removed by the next batch's commit; when no batch comes, on their own.
  let lastWorkAtMs = Date.now();
  let closing = false;
  const idleRemovals = setInterval(() => {
    if (closing || Date.now() - lastWorkAtMs < OUTBOX_IDLE_REMOVAL_MS) return;
    // A failed commit fails the actor; the next batch reports it. In cluster mode the entries are in their partitions'
    // key space, removed by a record of the partition: a quiet partition gets one of its own.
    actor
      .removePublishedOutbox()
      .then(() => cluster?.removeAcknowledgedOutbox())
      .catch(() => undefined);
  }, OUTBOX_IDLE_REMOVAL_MS);

  return async (task: ActorTask): Promise<ActorReply> => {
    switch (task.kind) {
      case 'batch': {
        const records = readBatch(task.buffer);
        lastWorkAtMs = Date.now();
        const { result, outcomes, outboxKey, watermarks } = await actor.process(records);
        // Dead letters are acked only once the dead-letter stream has them.
        await Promise.all(result.deadLetters.map((letter) => publishDeadLetter(js, subjects, settings.streamName, letter)));
        publisher.publish(outcomes, outboxKey, watermarks === undefined ? undefined : cluster?.committed(watermarks));
        // Overload of the outcome stream slows intake: this actor takes no batch until it catches up.
        await publisher.belowLimit();
        return { kind: 'batch', result: { ...result, deadLetters: result.deadLetters.map((letter) => ({ ...letter, payload: new Uint8Array(0) })) } };
      }
      case 'sweep': {
        lastWorkAtMs = Date.now();
        // Not beside a partition changing hands: a sweep's commit must find a changelog for every partition it touches,
        // and its outcomes are handed to the publisher before a release that follows waits for what is published.
        const sweep = async () => {
          const swept = await actor.sweep(task.nowMs, task.limit);
          publisher.publish(swept.outcomes, swept.outboxKey);
          return swept;
        };
        const { result } = await (cluster === undefined ? sweep() : cluster.exclusive(sweep));
        await publisher.belowLimit();
        return { kind: 'sweep', result };
      }
      case 'own': {
        assert(cluster !== undefined, 'own outside cluster mode');
        return { kind: 'owned', restored: await cluster.owning(task.partition, task.epoch) };
      }
      case 'release':
        assert(cluster !== undefined, 'release outside cluster mode');
        // Waits (bounded) for the outcome stream, then appends the partition's watermark-only record (cluster-partitions.ts).
        await cluster.exclusive(() => cluster.release(task.partition));
        return { kind: 'ok' };
      case 'ping':
        return { kind: 'ready', priority };
      case 'program':
        budgets = new SharedBudgets(task.budgets);
        actor.setProgram(task.program);
        return { kind: 'ok' };
      case 'close':
        closing = true;
        clearInterval(idleRemovals);
        await cluster?.close();
        await publisher.idle(CLOSE_PUBLISH_WAIT_MS);
        await actor.removePublishedOutbox().catch(() => undefined);
        publisher.close();
        await nc.drain();
        await store.close();
        return { kind: 'ok' };
    }
  };
}

/** Idle time after which published outbox entries are removed in a commit of their own. */
const OUTBOX_IDLE_REMOVAL_MS = 500;
/** On close, how long to wait for the outcome stream to acknowledge what is in flight (the rest is published again at the next start). */
const CLOSE_PUBLISH_WAIT_MS = 5_000;
const RETRY_DELAY_MS_MIN = 100;
const RETRY_DELAY_MS_MAX = 5_000;

/**
 * Publishes committed outcomes into the outcome stream and counts a batch as
 * published only once the stream has acknowledged every message of it
 * (PubAck): then its outbox entry may go. A refusal or a timeout publishes
 * the batch again, same message ids (the stream drops what it already has),
 * with a growing delay; its outbox entry stays meanwhile, and survives a
 * restart, so no outcome is lost silently. Bounded: past `unconfirmedMax`
 * batches the worker takes no new batch (`belowLimit`).
 */
class OutcomePublisher {
  private unconfirmed = 0;
  private waiters: (() => void)[] = [];
  /** One promise per batch not yet acknowledged, resolved when it is (what `settled` waits for). */
  private readonly inflight = new Set<Promise<void>>();
  private closed = false;
  /** Publishes that failed and were tried again (for tests and the operations log). */
  retries = 0;

  constructor(
    private readonly router: PubAckRouter,
    private readonly onPublished: (key: OutboxKey) => void,
    private readonly timeoutMs: number,
    private readonly unconfirmedMax: number,
    private readonly trouble?: PublishTrouble,
  ) {}

  /** `onAcknowledged`: called once the stream has every message of the batch (at once when there are none). */
  publish(outcomes: readonly OutcomeMessage[], outboxKey: OutboxKey | undefined, onAcknowledged?: () => void): void {
    if (outcomes.length === 0) {
      onAcknowledged?.();
      return;
    }
    this.unconfirmed += 1;
    let acknowledged!: () => void;
    const done = new Promise<void>((resolve) => (acknowledged = resolve));
    this.inflight.add(done);
    const attempt = (delayMs: number): void => {
      if (this.closed) return;
      this.router.publishGroup(outcomes, this.timeoutMs).then(
        () => {
          this.unconfirmed -= 1;
          if (outboxKey !== undefined) this.onPublished(outboxKey);
          onAcknowledged?.();
          this.inflight.delete(done);
          acknowledged();
          if (this.unconfirmed === 0) this.trouble?.caughtUp(this.retries);
          this.wake();
        },
        (error: unknown) => {
          if (this.closed) return;
          this.retries += 1;
          this.trouble?.failed(error, this.unconfirmed, this.retries);
          // The bound may have been reached before the first refusal came back (slow PubAcks under load): say it holds now.
          if (this.waiters.length > 0) this.trouble?.holding(this.unconfirmed);
          setTimeout(() => attempt(Math.min(delayMs * 2, RETRY_DELAY_MS_MAX)), delayMs);
        },
      );
    };
    attempt(RETRY_DELAY_MS_MIN);
  }

  /** Resolves at once while fewer than the bound are unconfirmed, else once enough are. */
  belowLimit(): Promise<void> {
    if (this.unconfirmed < this.unconfirmedMax) return Promise.resolve();
    this.trouble?.holding(this.unconfirmed);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * True once every batch published before this call is acknowledged (later
   * ones are not waited for), false after `timeoutMs`: a release waits for
   * its partition's outcomes this way.
   */
  async settled(timeoutMs: number): Promise<boolean> {
    if (this.inflight.size === 0) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([Promise.all([...this.inflight]).then(() => true as const), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves once every batch is acknowledged, or after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.unconfirmed > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  }

  close(): void {
    this.closed = true;
    this.router.close();
    this.wake();
  }

  private wake(): void {
    if (this.unconfirmed >= this.unconfirmedMax && !this.closed) return;
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}

/** While the outcome stream refuses or does not answer: a warning at once, then every this often. */
const PUBLISH_TROUBLE_WARN_EVERY_MS = 30_000;

/**
 * Says in the log, for the operator, that the outcome stream does not take
 * this actor's outcomes and what that does: the committed outcomes wait in the
 * outbox (nothing is lost), the actor stops taking events at the bound, and
 * what to change. Once at the first failure, then every 30 s while it lasts,
 * and once when every outcome is acknowledged again.
 */
class PublishTrouble {
  private sinceMs: number | undefined;
  private lastWarnedMs = 0;
  private retriesBefore = 0;
  private held = false;

  constructor(
    private readonly logger: Logger,
    private readonly streamName: string,
    private readonly unconfirmedMax: number,
  ) {}

  failed(error: unknown, unconfirmed: number, retries: number): void {
    const nowMs = Date.now();
    if (this.sinceMs === undefined) {
      this.sinceMs = nowMs;
      this.retriesBefore = retries - 1;
    } else if (nowMs - this.lastWarnedMs < PUBLISH_TROUBLE_WARN_EVERY_MS) {
      return;
    }
    this.lastWarnedMs = nowMs;
    const reason = (error as Error)?.message ?? String(error);
    this.logger.warn(
      { code: 'ERR_STREAM_PUBLISH', stream: this.streamName, reason, unconfirmedBatches: unconfirmed, forMs: nowMs - this.sinceMs },
      `the outcome stream ${this.streamName} does not take outcomes (${reason}): ${unconfirmed} committed outcome batches wait in the outbox ` +
        `and are published again (at most every 5 s); at LOYALTY_OUTCOME_BATCHES_UNCONFIRMED_MAX (${this.unconfirmedMax}) this actor takes no new events. ` +
        `Make room in ${this.streamName} (raise max_msgs / max_bytes / max_msgs_per_subject, or discard old), or recreate it if it is gone; nothing is lost`,
    );
  }

  /** The actor takes no new batch until the stream acknowledges some: said once per episode. */
  holding(unconfirmed: number): void {
    if (this.held || this.sinceMs === undefined) return; // slow acks alone are back-pressure, not trouble
    this.held = true;
    this.logger.warn(
      { code: 'ERR_STREAM_PUBLISH', stream: this.streamName, unconfirmedBatches: unconfirmed },
      `${unconfirmed} outcome batches not acknowledged by ${this.streamName} (LOYALTY_OUTCOME_BATCHES_UNCONFIRMED_MAX): this actor takes no new events until the stream takes outcomes again; the consumer's lag grows meanwhile`,
    );
  }

  caughtUp(retries: number): void {
    if (this.sinceMs === undefined) return;
    this.logger.warn(
      { stream: this.streamName, forMs: Date.now() - this.sinceMs, retries: retries - this.retriesBefore },
      `the outcome stream ${this.streamName} acknowledges every outcome again; the outbox is caught up and this actor takes events again`,
    );
    this.sinceMs = undefined;
    this.held = false;
  }
}

export default initialize();
