import { AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import type { Settings } from '../config/settings.js';
import { EngineError } from '../config/errors.js';
import { subjectsFor } from './subjects.js';
import { ensureChangelogStream } from '../cluster/changelog.js';

const DAY_MS = 24 * 60 * 60 * 1000;
/** JetStream de-duplicates re-published outcomes and dead letters within this window. */
const DUPLICATE_WINDOW_MS = 2 * 60 * 1000;

/**
 * Creates (or updates) the engine's streams and its durable consumer. The
 * consumer acks all-up-to: the engine acks one watermark per committed batch.
 */
export async function ensureTopology(jsm: JetStreamManager, settings: Settings): Promise<void> {
  const subjects = subjectsFor(settings.subjectPrefix);
  const streams: [name: string, subject: string, maxAgeDays: number][] = [
    // Cluster mode: the servers' partition() mapping puts every input message on its partition's subject.
    [settings.streamName, settings.cluster ? subjects.partitionedTransactions : subjects.transactions, 7],
    [settings.deadLetterStreamName, subjects.deadLetterWildcard, 30],
    [settings.outcomeStreamName, subjects.outcomeWildcard, 7],
  ];
  for (const [name, subject, maxAgeDays] of streams) {
    await ensureStream(jsm, {
      name,
      subjects: [subject],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(maxAgeDays * DAY_MS),
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
      ...(settings.cluster ? { num_replicas: settings.clusterReplicas } : {}),
    });
  }
  if (settings.cluster) {
    // The commit point: one subject per partition, appended with the expected last sequence (src/cluster/changelog.ts).
    await withCreateRetries(() => ensureChangelogStream(jsm, { stream: settings.changelogStreamName, subjectPrefix: settings.subjectPrefix, replicas: settings.clusterReplicas }), `stream ${settings.changelogStreamName}`);
    return; // consumers per partition, created by their owners (resetPartitionConsumer)
  }
  await resetConsumerToAckFloor(jsm, settings);
}

/** Cluster mode: the durable consumer of one partition. */
export function partitionConsumerName(settings: Pick<Settings, 'consumerName'>, partition: number): string {
  return `${settings.consumerName}-p${partition}`;
}

/**
 * Cluster mode: (re)creates a partition's durable consumer to deliver its
 * messages after `watermark`, the highest input sequence its changelog holds
 * as committed (the new owner's restore gives it). Recreated rather than
 * bound: whatever an earlier owner had delivered and not committed is then
 * delivered again, first, in stream order, and the idempotency records of
 * the restored state make the committed ones duplicates. Costs ~83 ms median
 * on nats-server 2.9.10 at 200,000 stored messages (docs/cluster.md).
 */
export async function resetPartitionConsumer(jsm: JetStreamManager, settings: Settings, partition: number, watermark: number): Promise<void> {
  const name = partitionConsumerName(settings, partition);
  try {
    await jsm.consumers.delete(settings.streamName, name);
  } catch (error) {
    if (!isNotFound(error)) throw wrap(error, `consumer ${name}`);
  }
  try {
    await jsm.consumers.add(settings.streamName, {
      durable_name: name,
      ack_policy: AckPolicy.All,
      filter_subject: subjectsFor(settings.subjectPrefix).partitionTransactions(partition),
      ...(watermark > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: watermark + 1 } : { deliver_policy: DeliverPolicy.All }),
      max_ack_pending: settings.ackPendingMax,
      ack_wait: nanos(settings.ackWaitMs),
      max_deliver: -1,
      num_replicas: settings.clusterReplicas,
    });
  } catch (error) {
    throw wrap(error, `consumer ${name}`);
  }
}

/**
 * (Re)creates the durable consumer so delivery restarts right after its ack
 * floor. Why: the consumer acks all-up-to. Messages a crashed run had
 * delivered but not acked stay pending on the server and would be redelivered
 * only after ack_wait, behind newer messages; an ack-all watermark of this run
 * would then ack them unprocessed (lost), and a member's events would arrive
 * out of order. Starting over from the floor redelivers them first, in stream
 * order; the processed-id records make the ones already committed no-ops.
 * One engine instance owns the consumer.
 *
 * `floorIfMissing`: where to start when there is no consumer (0: the whole
 * stream). A running engine that recreates its consumer passes its own acked
 * watermark, so that a reset cut short between the delete and the add does
 * not redeliver the whole stream.
 */
export async function resetConsumerToAckFloor(jsm: JetStreamManager, settings: Settings, floorIfMissing = 0): Promise<number> {
  let ackFloor = floorIfMissing;
  try {
    const info = await jsm.consumers.info(settings.streamName, settings.consumerName);
    // A consumer recreated at sequence S reports an ack floor of 0 until its
    // first ack; its floor is then S - 1, not the stream's start.
    ackFloor = Math.max(info.ack_floor.stream_seq, (info.config.opt_start_seq ?? 1) - 1);
    await jsm.consumers.delete(settings.streamName, settings.consumerName);
  } catch (error) {
    if (!isNotFound(error)) throw wrap(error, `consumer ${settings.consumerName}`);
  }
  try {
    await jsm.consumers.add(settings.streamName, {
      durable_name: settings.consumerName,
      ack_policy: AckPolicy.All,
      ...(ackFloor > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: ackFloor + 1 } : { deliver_policy: DeliverPolicy.All }),
      // No filter subject: the stream holds only input subjects, and nats-server
      // 2.9 walks the whole stream to count a filtered consumer's pending
      // messages, which timed out on a stream of 200,000 messages.
      max_ack_pending: settings.ackPendingMax,
      ack_wait: nanos(settings.ackWaitMs),
      max_deliver: -1,
    });
  } catch (error) {
    throw wrap(error, `consumer ${settings.consumerName}`);
  }
  return ackFloor;
}

/**
 * Runs a create-if-missing of a stream, bucket or object store, asking again
 * after a failure: instances of a cluster starting together create the same
 * ones side by side, and on nats-server 2.9 a replicated stream's create
 * raced by another can time out although the stream then exists (seen with 3
 * engines at once on 3 servers; nats-server#3677). The next attempt finds it.
 */
export async function withCreateRetries<T>(create: () => Promise<T>, what = 'a JetStream stream or bucket', deadlineMs = CREATE_DEADLINE_MS): Promise<T> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await create();
    } catch (error) {
      const elapsed = Date.now() - started;
      if (elapsed >= deadlineMs) {
        throw error instanceof EngineError ? error : wrap(error, `${what} (${attempt} attempts in ${elapsed} ms)`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 250 * attempt) + Math.floor(Math.random() * 250)));
    }
  }
}

/**
 * How long creates are asked again: on 2.9.10 three instances creating the
 * same R3 stream or bucket at once each timed out (the API's 5-10 s) up to
 * four times in a row while the meta leader settled.
 */
const CREATE_DEADLINE_MS = 90_000;

function ensureStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  return withCreateRetries(() => ensureStreamOnce(jsm, config), `stream ${config.name}`);
}

async function ensureStreamOnce(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.info(config.name);
    await jsm.streams.update(config.name, config);
  } catch (error) {
    if (!isNotFound(error)) throw wrap(error, `stream ${config.name}`);
    try {
      await jsm.streams.add(config);
    } catch (inner) {
      throw wrap(inner, `stream ${config.name}`);
    }
  }
}

function isNotFound(error: unknown): boolean {
  const text = String((error as Error)?.message ?? error);
  return /not found/i.test(text);
}

function wrap(error: unknown, what: string): EngineError {
  return new EngineError('ERR_NATS_TOPOLOGY', `cannot set up ${what}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
}
