import type { NatsConnection } from '@nats-io/nats-core';
import { jetstream } from '@nats-io/jetstream';
import { workerData } from 'piscina';
import { readBatch } from '../routing/batch-buffer.js';
import { LmdbStore } from '../store/lmdb.js';
import { connectNats } from '../transport/connect.js';
import { publishDeadLetter } from '../transport/dead-letters.js';
import { publishOutcomes, type OutcomeMessage } from '../transport/outcomes.js';
import { subjectsFor } from '../transport/subjects.js';
import { Actor } from './actor.js';
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
  });
  const publisher = new OutcomePublisher(nc, store);

  return async (task: ActorTask): Promise<ActorReply> => {
    switch (task.kind) {
      case 'batch': {
        const records = readBatch(task.buffer);
        const { result, outcomes, outboxKey } = await actor.process(records);
        // Dead letters are acked only once the dead-letter stream has them.
        await Promise.all(result.deadLetters.map((letter) => publishDeadLetter(js, subjects, settings.streamName, letter)));
        publisher.publish(outcomes, outboxKey);
        return { kind: 'batch', result: { ...result, deadLetters: result.deadLetters.map((letter) => ({ ...letter, payload: new Uint8Array(0) })) } };
      }
      case 'sweep': {
        const { result, outcomes, outboxKey } = await actor.sweep(task.nowMs, task.limit);
        publisher.publish(outcomes, outboxKey);
        return { kind: 'sweep', result };
      }
      case 'ping':
        return { kind: 'ready', priority };
      case 'program':
        budgets = new SharedBudgets(task.budgets);
        actor.setProgram(task.program);
        return { kind: 'ok' };
      case 'close':
        await publisher.idle();
        await nc.drain();
        await store.close();
        return { kind: 'ok' };
    }
  };
}

/**
 * Publishes committed outcomes (core NATS, captured by the outcome stream,
 * de-duplicated there by message id), then removes their outbox entry once a
 * flush round trip shows the server has them. Batches go out in commit order.
 */
class OutcomePublisher {
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly nc: NatsConnection,
    private readonly store: LmdbStore,
  ) {}

  publish(outcomes: readonly OutcomeMessage[], outboxKey: OutboxKey | undefined): void {
    publishOutcomes(this.nc, outcomes);
    if (outboxKey === undefined) return;
    this.chain = this.chain
      .then(() => this.nc.flush())
      .then(() => this.store.removeOutbox(outboxKey))
      // A failed flush leaves the outbox entry: it is published again after a restart.
      .catch(() => undefined);
  }

  idle(): Promise<void> {
    return this.chain;
  }
}

export default initialize();
