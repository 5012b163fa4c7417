import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor } from '../../../src/actors/actor.js';
import { ClusterPartitions, type ClusterOutcomes } from '../../../src/actors/cluster-partitions.js';
import type { ActorWorkerData } from '../../../src/actors/protocol.js';
import { createBudgetLayout } from '../../../src/actors/budgets.js';
import { ensureChangelogStream, PartitionChangelog } from '../../../src/cluster/changelog.js';
import { restorePartition } from '../../../src/cluster/restore.js';
import { PartitionSnapshots } from '../../../src/cluster/snapshots.js';
import { loadSettings } from '../../../src/config/settings.js';
import { createLogger } from '../../../src/log.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import type { BatchRecord } from '../../../src/routing/batch-buffer.js';
import type { LmdbStore } from '../../../src/store/lmdb.js';
import type { OutboxKey } from '../../../src/store/types.js';
import type { OutcomeMessage } from '../../../src/transport/outcomes.js';
import { PubAckRouter } from '../../../src/transport/pub-acks.js';
import { actorOptions, emptyStore, generatedRecords, PARTITIONS, program } from '../../helpers/partition-stores.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Handover in cluster mode, the actor side against a real nats-server:
 *
 * - a graceful release appends a watermark-only record once the outcome
 *   stream acknowledged what was published, so the next owner's restored
 *   published watermark is the committed one and its consumer, resuming
 *   after it, reads no event again as a duplicate (before: after the lagging
 *   mark of the last batch record);
 * - the outbox moves with the partition: outcomes an owner committed and did
 *   not publish before it died (a sweep's, which no input redelivers) are
 *   published by the next owner after its restore, each once in the outcome
 *   stream, and removed from the partition once acknowledged.
 */
let server: TestNatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
const root = mkdtempSync(join(tmpdir(), 'loyalty-handover-outbox-'));
const OUTCOMES = 'LOYALTY_OUTCOMES_HO';
/** After every purchase's return window and pending period (the generated traffic ends 2026-12-01): the sweep has work. */
const SWEEP_AT_MS = Date.parse('2027-03-01T00:00:00Z');

beforeAll(async () => {
  server = await startTestNatsServer();
  nc = await connectTest(server.url);
  jsm = await jetstreamManager(nc);
  // The outcome stream as the engine creates it: message ids within the duplicate window are dropped.
  await jsm.streams.add({ name: OUTCOMES, subjects: ['loyalty.outcome.>'], duplicate_window: 120_000_000_000 });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  rmSync(root, { recursive: true, force: true });
});

function workerData(stream: string, bucket: string, instanceId: string): ActorWorkerData {
  const settings = loadSettings(
    {},
    { cluster: 'true', natsUrl: server.url, partitions: String(PARTITIONS), changelogStreamName: stream, snapshotBucket: bucket, snapshotRecordsMin: '1000000', snapshotBytesMin: String(1024 * 1024 * 1024), snapshotIntervalMsMin: '0', logLevel: 'warn' },
  );
  return { actorIndex: 0, settings, program, budgets: createBudgetLayout({}, new Map()), bootId: 1, natsUrl: server.url, instanceId };
}

/** The worker's OutcomePublisher in small: PubAcks awaited per batch, acknowledged outbox keys told to the actor, `settled` for a release. */
class TestPublisher implements ClusterOutcomes {
  private readonly router = new PubAckRouter(nc, undefined);
  private readonly inflight = new Set<Promise<void>>();
  published = 0;

  constructor(private readonly actor: Actor) {}

  batch(outcomes: readonly OutcomeMessage[], outboxKey: OutboxKey | undefined, onAcknowledged?: () => void): void {
    if (outcomes.length === 0) {
      onAcknowledged?.();
      return;
    }
    const done = this.router.publishGroup(outcomes, 10_000).then(() => {
      this.published += outcomes.length;
      if (outboxKey !== undefined) this.actor.outboxPublished(outboxKey);
      onAcknowledged?.();
      this.inflight.delete(done);
    }, () => undefined); // closed with some in flight: the test is over
    this.inflight.add(done);
  }

  publish(outcomes: readonly OutcomeMessage[], onAcknowledged: () => void): void {
    this.batch(outcomes, undefined, onAcknowledged);
  }

  async settled(timeoutMs: number): Promise<boolean> {
    const all = Promise.all([...this.inflight]).then(() => true);
    return Promise.race([all, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs))]);
  }

  close(): void {
    this.router.close();
  }
}

interface Owner {
  readonly store: LmdbStore;
  readonly actor: Actor;
  readonly partitions: ClusterPartitions;
  readonly publisher: TestPublisher;
}

async function owner(name: string, data: ActorWorkerData): Promise<Owner> {
  const store = await emptyStore(root, name);
  const actor = new Actor(store, program, { ...actorOptions, ownsPartitions: 'given' });
  const partitions = await ClusterPartitions.open(nc, store, actor, data, createLogger('warn'));
  const publisher = new TestPublisher(actor);
  partitions.attachOutcomes(publisher);
  return { store, actor, partitions, publisher };
}

/** What the worker does with a batch: commit, then publish with the partitions' published watermarks moving on acknowledgement. */
async function consume(at: Owner, records: readonly BatchRecord[], batchSize = 100): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let offset = 0; offset < records.length; offset += batchSize) {
    const { result, outcomes, outboxKey, watermarks } = await at.actor.process(records.slice(offset, offset + batchSize));
    at.publisher.batch(outcomes, outboxKey, watermarks === undefined ? undefined : at.partitions.committed(watermarks));
    for (const [key, count] of Object.entries(result.counts)) counts[key] = (counts[key] ?? 0) + count;
  }
  return counts;
}

function duplicates(counts: Record<string, number>): number {
  return Object.entries(counts).reduce((sum, [key, count]) => sum + (key.endsWith('|duplicate') ? count : 0), 0);
}

/** Every message of the outcome stream: how many times each message id is stored. */
async function storedMessageIds(): Promise<Map<string, number>> {
  const ids = new Map<string, number>();
  const info = await jsm.streams.info(OUTCOMES);
  const consumer = await jetstream(nc).consumers.get(OUTCOMES);
  const messages = await consumer.fetch({ max_messages: info.state.messages, expires: 5_000 });
  let seen = 0;
  for await (const message of messages) {
    const id = message.headers?.get('Nats-Msg-Id') ?? '';
    ids.set(id, (ids.get(id) ?? 0) + 1);
    if (++seen >= info.state.messages) break;
  }
  expect(seen).toBe(info.state.messages);
  return ids;
}

async function restoredInto(name: string, stream: string, bucket: string, partition: number): Promise<{ store: LmdbStore; restored: Awaited<ReturnType<typeof restorePartition>> }> {
  const store = await emptyStore(root, name);
  const snapshots = await PartitionSnapshots.open(nc, { bucket, replicas: 1 });
  const restored = await restorePartition({ snapshots, changelog: new PartitionChangelog(jetstream(nc), jsm, stream, 'loyalty', partition, 'reader'), root: store.root, partition });
  return { store, restored };
}

describe('a partition handed over in cluster mode', () => {
  it('released gracefully: the next owner resumes after everything committed, so its consumer reads no event again', async () => {
    const stream = 'LOYALTY_CHANGELOG_HO1';
    const bucket = 'LOYALTY_SNAPSHOTS_HO1';
    await ensureChangelogStream(jsm, { stream, subjectPrefix: 'loyalty', replicas: 1 });
    const a = await owner('release-a', workerData(stream, bucket, 'engine-a'));
    const all = Array.from({ length: PARTITIONS }, (_, partition) => partition);
    for (const partition of all) await a.partitions.exclusive(() => a.partitions.own(partition, 10 + partition));
    const moved = 5;
    const traffic = generatedRecords({ runId: 'ho1', members: 400, count: 4_000 });
    const ofMoved = traffic.filter((record) => partitionOf(record.memberId, PARTITIONS) === moved);
    const committed = Math.max(...ofMoved.map((record) => record.streamSequence));
    // A backlog: batches back to back, each record appended before the batch's own outcomes are acknowledged.
    expect(duplicates(await consume(a, traffic))).toBe(0);

    // What the changelog said before the release: the published watermark lags the committed one.
    const before = await restoredInto('release-before', stream, bucket, moved);
    expect(before.restored.watermark).toBe(committed);
    expect(before.restored.publishedWatermark).toBeLessThan(committed);
    const wouldRepeat = ofMoved.filter((record) => record.streamSequence > before.restored.publishedWatermark).length;
    await before.store.close();

    await a.partitions.exclusive(() => a.partitions.release(moved));

    const b = await owner('release-b', workerData(stream, bucket, 'engine-b'));
    const restored = await b.partitions.exclusive(() => b.partitions.own(moved, 100));
    expect(restored.watermark).toBe(committed);
    expect(restored.publishedWatermark).toBe(committed);
    // Every outbox entry of the partition was acknowledged before the release, and the record removed them: none moved.
    expect(restored.republished).toBe(0);
    expect([...b.store.partitionOutboxEntries(moved)]).toEqual([]);

    // The consumer resumes after the published watermark: the traffic again (a redelivery of all of it) past it, then new events.
    const redelivered = ofMoved.filter((record) => record.streamSequence > restored.publishedWatermark);
    expect(redelivered).toEqual([]);
    const fresh = generatedRecords({ runId: 'ho1_later', members: 400, count: 2_000 })
      .filter((record) => partitionOf(record.memberId, PARTITIONS) === moved)
      .map((record) => ({ ...record, streamSequence: record.streamSequence + traffic.length }));
    const counts = await consume(b, [...redelivered, ...fresh]);
    expect(duplicates(counts)).toBe(0);
    expect(Object.values(counts).reduce((sum, count) => sum + count, 0)).toBe(fresh.length);
    process.stdout.write(`[handover] partition ${moved}: ${ofMoved.length} events committed; the last batch record's published watermark would have re-read ${wouldRepeat} of them, the release record none\n`);

    expect(await b.publisher.settled(10_000)).toBe(true);
    a.publisher.close();
    b.publisher.close();
    await a.partitions.close();
    await b.partitions.close();
    await a.store.close();
    await b.store.close();
  }, 120_000);

  it('released after another owner fenced it (the lease was lost): the record is refused, the release completes, the next owner resumes after the older mark', async () => {
    const stream = 'LOYALTY_CHANGELOG_HO3';
    const bucket = 'LOYALTY_SNAPSHOTS_HO3';
    await jsm.streams.delete('LOYALTY_CHANGELOG_HO1').catch(() => undefined); // the same changelog subjects
    await ensureChangelogStream(jsm, { stream, subjectPrefix: 'loyalty', replicas: 1 });
    const a = await owner('fenced-a', workerData(stream, bucket, 'engine-a'));
    const lost = 9;
    await a.partitions.exclusive(() => a.partitions.own(lost, 10));
    const traffic = generatedRecords({ runId: 'ho3', members: 400, count: 3_000, keep: (memberId) => partitionOf(memberId, PARTITIONS) === lost });
    await consume(a, traffic.map((record, index) => ({ ...record, streamSequence: index + 1 })));
    expect(await a.publisher.settled(10_000)).toBe(true);

    const b = await owner('fenced-b', workerData(stream, bucket, 'engine-b'));
    const taken = await b.partitions.exclusive(() => b.partitions.own(lost, 11));
    expect(taken.watermark).toBe(traffic.length);
    expect(taken.publishedWatermark).toBeLessThan(traffic.length);
    const started = performance.now();
    await a.partitions.exclusive(() => a.partitions.release(lost));
    expect(performance.now() - started).toBeLessThan(10_000);
    // Nothing of the old owner landed after the fence: a third restore ends where the new owner's did.
    const again = await restoredInto('fenced-c', stream, bucket, lost);
    expect(again.restored.changelogSeq).toBe(taken.changelogSeq);
    expect(again.restored.publishedWatermark).toBe(taken.publishedWatermark);
    await again.store.close();

    a.publisher.close();
    b.publisher.close();
    await a.partitions.close();
    await b.partitions.close();
    await a.store.close();
    await b.store.close();
  }, 120_000);

  it('lost with a sweep\'s outcomes committed and not published: the next owner publishes each once, then removes them', async () => {
    const stream = 'LOYALTY_CHANGELOG_HO2';
    const bucket = 'LOYALTY_SNAPSHOTS_HO2';
    await jsm.streams.delete('LOYALTY_CHANGELOG_HO3'); // the same changelog subjects
    await ensureChangelogStream(jsm, { stream, subjectPrefix: 'loyalty', replicas: 1 });
    await jsm.streams.purge(OUTCOMES);
    const a = await owner('crash-a', workerData(stream, bucket, 'engine-a'));
    const all = Array.from({ length: PARTITIONS }, (_, partition) => partition);
    for (const partition of all) await a.partitions.exclusive(() => a.partitions.own(partition, 10 + partition));
    const traffic = generatedRecords({ runId: 'ho2', members: 300, count: 3_000 });
    await consume(a, traffic);
    expect(await a.publisher.settled(10_000)).toBe(true);
    const batchOutcomes = a.publisher.published;
    // The sweep commits (changelog first, then LMDB) and the owner dies before its publisher gets the outcomes.
    const swept: OutcomeMessage[] = [];
    for (let sweeps = 0; sweeps < 20; sweeps++) {
      const { result, outcomes } = await a.actor.sweep(SWEEP_AT_MS, 500);
      swept.push(...outcomes);
      if (result.finished) break;
    }
    expect(swept.length).toBeGreaterThan(50);
    const sweptIds = new Set(swept.map(([, id]) => id));
    expect(sweptIds.size).toBe(swept.length);
    const storedBefore = await storedMessageIds();
    for (const id of sweptIds) expect(storedBefore.has(id)).toBe(false);
    a.publisher.close();

    // A new owner takes every partition (fences, restores) and publishes what it found in their outboxes.
    const b = await owner('crash-b', workerData(stream, bucket, 'engine-b'));
    let republished = 0;
    for (const partition of all) republished += (await b.partitions.exclusive(() => b.partitions.own(partition, 100 + partition))).republished ?? 0;
    expect(republished).toBeGreaterThan(0);
    expect(await b.publisher.settled(20_000)).toBe(true);

    const stored = await storedMessageIds();
    for (const id of sweptIds) expect(stored.get(id), id).toBe(1);
    // Nothing twice: entries the old owner had published and not yet removed were dropped by the stream's duplicate window.
    for (const [id, count] of stored) expect(count, id).toBe(1);
    expect(stored.size).toBe(batchOutcomes + swept.length);

    // Acknowledged, the entries leave the partitions (a record of each, the idle path) and their changelogs.
    await b.partitions.removeAcknowledgedOutbox();
    for (const partition of all) expect([...b.store.partitionOutboxEntries(partition)], `partition ${partition}`).toEqual([]);
    const again = await restoredInto('crash-c', stream, bucket, 7);
    expect([...again.store.partitionOutboxEntries(7)]).toEqual([]);
    await again.store.close();
    process.stdout.write(`[handover] ${swept.length} sweep outcomes committed by a dead owner, ${republished} outbox entries published again by the next, each outcome stored once\n`);

    b.publisher.close();
    await a.partitions.close();
    await b.partitions.close();
    await a.store.close();
    await b.store.close();
  }, 120_000);
});
