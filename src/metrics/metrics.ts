import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BatchResult, SweepResult } from '../actors/actor.js';

/**
 * Every metric the engine exposes, in one place. Labels are bounded (event
 * type from a fixed set, result, actor index, reason kind), never a member id.
 * Actors do not touch the registry: they report through their batch results.
 */
export class EngineMetrics {
  readonly registry = new Registry();

  readonly events = new Counter({
    name: 'loyalty_events_total',
    help: 'Events processed, by type and result (applied, rejected, duplicate, invalid).',
    labelNames: ['type', 'result'] as const,
    registers: [this.registry],
  });

  readonly commitLatency = new Histogram({
    name: 'loyalty_event_commit_latency_seconds',
    help: 'End-to-end latency from the event being stored in JetStream to its effect being committed.',
    buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly batchSize = new Histogram({
    name: 'loyalty_batch_size_events',
    help: 'Events per actor batch.',
    buckets: [1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 16384],
    registers: [this.registry],
  });

  readonly commitDuration = new Histogram({
    name: 'loyalty_store_commit_duration_seconds',
    help: 'LMDB commit of one batch, until durable.',
    labelNames: ['actor'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  readonly applyDuration = new Histogram({
    name: 'loyalty_batch_apply_duration_seconds',
    help: 'Decoding, validating and applying one batch in its actor, before the commit.',
    labelNames: ['actor'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  readonly actorQueueDepth = new Gauge({
    name: 'loyalty_actor_batches_in_flight',
    help: 'Batches sent to an actor and not yet answered (bounded by LOYALTY_ACTOR_BATCHES_IN_FLIGHT_MAX).',
    labelNames: ['actor'] as const,
    registers: [this.registry],
  });

  readonly actorPendingEvents = new Gauge({
    name: 'loyalty_actor_pending_events',
    help: 'Events waiting in an actor\'s batch that is still filling.',
    labelNames: ['actor'] as const,
    registers: [this.registry],
  });

  readonly cachedMembers = new Gauge({
    name: 'loyalty_actor_cached_members',
    help: 'Member states held in an actor\'s memory (bounded by LOYALTY_MEMBER_CACHE_MAX).',
    labelNames: ['actor'] as const,
    registers: [this.registry],
  });

  readonly actorHeap = new Gauge({
    name: 'loyalty_actor_heap_used_bytes',
    help: "V8 heap in use by an actor's thread (the process metrics show the main thread's only).",
    labelNames: ['actor'] as const,
    registers: [this.registry],
  });

  readonly deadLetters = new Counter({
    name: 'loyalty_dead_letters_total',
    help: 'Messages sent to the dead-letter stream, by reason kind.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly consumerPending = new Gauge({
    name: 'loyalty_consumer_pending_messages',
    help: 'Messages in the stream not yet delivered to the engine (consumer lag).',
    registers: [this.registry],
  });

  readonly ackPending = new Gauge({
    name: 'loyalty_ack_pending_messages',
    help: 'Delivered messages not yet acked (bounded by LOYALTY_ACK_PENDING_MAX).',
    registers: [this.registry],
  });

  readonly outcomes = new Counter({
    name: 'loyalty_outcomes_total',
    help: 'Outcome messages handed to NATS by the actors.',
    registers: [this.registry],
  });

  readonly acks = new Counter({
    name: 'loyalty_acks_total',
    help: 'Ack-all watermarks sent to JetStream.',
    registers: [this.registry],
  });

  readonly deliveriesLost = new Counter({
    name: 'loyalty_deliveries_lost_total',
    help: 'JetStream deliveries that never arrived (gaps in the delivery sequence after a cut connection); acks are held below them until they are redelivered.',
    registers: [this.registry],
  });

  readonly redeliveriesSkipped = new Counter({
    name: 'loyalty_redeliveries_skipped_total',
    help: 'JetStream redeliveries of messages still in flight in this engine (ack_wait passed before their commit), left out: the first copy is applied and its commit acks both. Many mean ack_wait is short for the load.',
    registers: [this.registry],
  });

  readonly consumerResets = new Counter({
    name: 'loyalty_consumer_resets_total',
    help: 'Times the running engine recreated its JetStream consumer at its ack floor: it held ack-pending entries below that floor (after a nats-server restart), which no ack can clear.',
    registers: [this.registry],
  });

  readonly sweepMembers = new Counter({
    name: 'loyalty_sweep_members_total',
    help: 'Members looked at by the scheduled sweep (scanned) and changed by it (swept: points released, expired, tiers reviewed).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly sweepDuration = new Histogram({
    name: 'loyalty_sweep_chunk_duration_seconds',
    help: 'One sweep task in one actor, commit included.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  recordSweep(result: SweepResult, seconds: number): void {
    this.sweepMembers.inc({ result: 'scanned' }, result.scanned);
    this.sweepMembers.inc({ result: 'swept' }, result.swept);
    this.sweepDuration.observe(seconds);
    this.outcomes.inc(result.outcomeCount);
  }

  recordBatch(actor: number, result: BatchResult, nowMs: number): void {
    const actorLabel = String(actor);
    for (const [key, value] of Object.entries(result.counts)) {
      const separator = key.indexOf('|');
      this.events.inc({ type: key.slice(0, separator), result: key.slice(separator + 1) }, value);
    }
    for (let index = 0; index < result.publishedAtMs.length; index++) {
      this.commitLatency.observe(Math.max(0, nowMs - result.publishedAtMs[index]!) / 1000);
    }
    for (const letter of result.deadLetters) this.deadLetters.inc({ reason: letter.kind });
    this.batchSize.observe(result.committedSequences.length + result.deadLetters.length);
    this.commitDuration.observe({ actor: actorLabel }, result.commitSeconds);
    this.applyDuration.observe({ actor: actorLabel }, result.applySeconds);
    this.cachedMembers.set({ actor: actorLabel }, result.cachedMembers);
    this.actorHeap.set({ actor: actorLabel }, result.heapUsedBytes);
    this.outcomes.inc(result.outcomeCount);
  }
}
