import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Key } from 'lmdb';
import { PartitionChangelog } from '../cluster/changelog.js';
import { PublishedWatermarks } from '../cluster/published-watermarks.js';
import { changelogRecorder, restorePartition, takeSnapshot, type ChangelogRecorder } from '../cluster/restore.js';
import { SnapshotSchedule, type SnapshotScheduleStats } from '../cluster/snapshot-schedule.js';
import { PartitionSnapshots, type SnapshotPosition } from '../cluster/snapshots.js';
import { EngineError } from '../config/errors.js';
import { assert } from '../domain/assert.js';
import { withCreateRetries } from '../transport/topology.js';
import type { Logger } from '../log.js';
import type { LmdbStore } from '../store/lmdb.js';
import { applyPartitionChanges, storeIdentity, TREE_OUTBOX, type PartitionChanges } from '../store/partition-changes.js';
import type { OutcomeMessage } from '../transport/outcomes.js';
import { unpackOutbox, type Actor } from './actor.js';
import type { ActorWorkerData, RestoredPosition } from './protocol.js';

/** Where the actor thread's committed outcomes go (the worker's OutcomePublisher): what a release waits for, and what a new owner publishes again. */
export interface ClusterOutcomes {
  /** Publishes outcomes (with their message ids: the outcome stream drops those it has); `onAcknowledged` once it has all of them. */
  publish(outcomes: readonly OutcomeMessage[], onAcknowledged: () => void): void;
  /** Resolves true once every publication started before the call is acknowledged, false if `timeoutMs` passed first. */
  settled(timeoutMs: number): Promise<boolean>;
}

/**
 * Cluster mode, in the actor thread (docs/cluster.md): the partitions this
 * actor serves and their changelogs. Every commit of the store appends each
 * partition's share to that partition's changelog first (the commit point,
 * conditioned on the last sequence, so a fenced owner's append is refused
 * and nothing of its batch is written). Giving the actor a partition fences
 * its changelog with the lease's epoch, then restores the partition from its
 * last snapshot and the changelog tail into this thread's store, so the
 * state is the last owner's whatever this store held of it before.
 *
 * Snapshots: every completed commit tells the partition's SnapshotSchedule
 * its position; once enough was appended since the last snapshot, the
 * partition is exported to the object store and its changelog compacted up
 * to it, in this thread's exclusive chain (never beside an own, a release or
 * a sweep), and only while this owner still holds the partition with the
 * same changelog. A restore that finds a record missing (an earlier owner,
 * paused in a snapshot, compacted past the snapshot this one read) reads the
 * newest snapshot again.
 *
 * Handover: a release waits (bounded) until the outcome stream acknowledged
 * every outcome published so far, then appends a watermark-only record
 * whose published watermark is the now complete one, so the next owner's
 * consumer resumes after everything this owner committed instead of after
 * the lagging mark of its last batch record (which re-read as duplicates
 * most of a backlog's handover: 19,214 of 50,000 events in the bench).
 *
 * Outcomes without input move with the partition (LmdbStore.usePartitionOutbox):
 * a sweep's outcomes of a partition are part of its changelog record; a new
 * owner publishes what it restored of them again (same message ids) and
 * removes each once acknowledged, so the outcomes an owner committed and did
 * not publish before it died are published although no input redelivers
 * them. An event batch's come again with its events (the consumer resumes
 * after the published watermark) as duplicates' first outcomes.
 */
export class ClusterPartitions {
  private readonly changelogs = new Map<number, PartitionChangelog>();
  private readonly published = new PublishedWatermarks();
  private chain: Promise<unknown> = Promise.resolve();
  /** Takeovers running (owning), and what waits for a place among them. */
  private readonly owns = new Map<number, Promise<void>>();
  private ownsRunning = 0;
  private readonly ownsWaiting: (() => void)[] = [];

  private readonly schedule: SnapshotSchedule;
  private readonly epochs = new Map<number, number>();
  private readonly recording: ChangelogRecorder;
  private readonly identity: { readonly partitions: number; readonly storeFormat: number };
  private outcomes: ClusterOutcomes | undefined;
  /**
   * A release's wait for the outcome stream, or its record's append, ran out
   * of time: the next releases wait only briefly until one succeeds, so that
   * stopping with the stream down does not take 5 s per partition.
   */
  private outcomesLagging = false;
  private changelogLagging = false;

  private constructor(
    private readonly store: LmdbStore,
    private readonly actor: Actor,
    private readonly snapshots: PartitionSnapshots,
    private readonly newChangelog: (partition: number) => PartitionChangelog,
    private readonly owner: string,
    snapshotOptions: { readonly recordsMin: number; readonly bytesMin: number; readonly intervalMsMin: number },
    private readonly logger: Logger,
  ) {
    this.schedule = new SnapshotSchedule({
      ...snapshotOptions,
      retryMs: SNAPSHOT_RETRY_MS,
      take: (partition, position) => this.exclusive(() => this.snapshot(partition, position)),
      onError: (partition, error) => logger.warn({ err: error, partition }, 'partition snapshot failed; tried again later (the changelog keeps every record meanwhile)'),
    });
    const recording = changelogRecorder(
      this.changelogs,
      undefined,
      (partition) => this.published.of(partition),
      (partition, position, bytes) => {
        const epoch = this.epochs.get(partition);
        if (epoch !== undefined) this.schedule.committed(partition, { ...position, owner: this.owner, epoch }, bytes);
      },
    );
    store.setChangeRecorder(recording.recorder);
    store.usePartitionOutbox(owner);
    this.recording = recording;
    this.identity = storeIdentity(store.root);
  }

  /** The thread's publisher: until attached, a release waits for no outcome and an own publishes nothing again (tests). */
  attachOutcomes(outcomes: ClusterOutcomes): void {
    this.outcomes = outcomes;
  }

  static async open(nc: NatsConnection, store: LmdbStore, actor: Actor, data: ActorWorkerData, logger: Logger): Promise<ClusterPartitions> {
    const { settings } = data;
    // Above the 5 s default: right after a nats-server's death the cluster answers slowly for a while, and a
    // restore that times out is given up and taken again later (appends are asked again besides: changelog.ts).
    const js = jetstream(nc, { timeout: RESTORE_REQUEST_TIMEOUT_MS });
    const jsm = await jetstreamManager(nc, { timeout: 30_000 });
    const snapshots = await withCreateRetries(
      () => PartitionSnapshots.open(nc, { bucket: settings.snapshotBucket, replicas: settings.clusterReplicas, timeoutMs: RESTORE_REQUEST_TIMEOUT_MS }),
      `object store ${settings.snapshotBucket}`,
    );
    return new ClusterPartitions(
      store,
      actor,
      snapshots,
      (partition) => new PartitionChangelog(js, jsm, settings.changelogStreamName, settings.subjectPrefix, partition, data.instanceId),
      data.instanceId,
      { recordsMin: settings.snapshotRecordsMin, bytesMin: settings.snapshotBytesMin, intervalMsMin: settings.snapshotIntervalMsMin },
      logger,
    );
  }

  snapshotStats(): SnapshotScheduleStats {
    return this.schedule.stats();
  }

  /** Stops scheduling snapshots; one in flight finishes. */
  close(): Promise<void> {
    return this.schedule.stop();
  }

  /** Runs `action` after every earlier one of the chain (sweeps, releases and snapshots never overlap). */
  exclusive<T>(action: () => Promise<T>): Promise<T> {
    const next = this.chain.then(action);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /**
   * Takes a partition over (`own`) beside up to OWNS_IN_FLIGHT_MAX - 1
   * others and beside the exclusive chain. Why not in the chain: a takeover
   * waits on the network (the fence, the snapshot, the tail), and one after
   * another an actor took 31 partitions over in ~25 s at 200,000 events, and
   * past 120 s on a loaded machine. Why it is safe: an own touches only its
   * partition's key ranges, and the partition is nobody's here until its last
   * step (no sweep, snapshot, outbox record or batch of it can run before);
   * the engine sends a partition's release only after its own answered
   * (src/runtime/partition-consumers.ts chains them per partition), and a
   * release waits for an own of the same partition still running.
   */
  owning(partition: number, epoch: number): Promise<RestoredPosition> {
    assert(!this.owns.has(partition), `partition ${partition} is being taken over twice at once`);
    const run = async (): Promise<RestoredPosition> => {
      while (this.ownsRunning >= OWNS_IN_FLIGHT_MAX) await new Promise<void>((resolve) => this.ownsWaiting.push(resolve));
      this.ownsRunning += 1;
      try {
        return await this.own(partition, epoch);
      } finally {
        this.ownsRunning -= 1;
        this.ownsWaiting.shift()?.();
      }
    };
    const owning = run();
    const settled = owning.then(
      () => undefined,
      () => undefined,
    );
    this.owns.set(partition, settled);
    void settled.then(() => {
      if (this.owns.get(partition) === settled) this.owns.delete(partition);
    });
    return owning;
  }

  async own(partition: number, epoch: number): Promise<RestoredPosition> {
    const started = performance.now();
    // Fence first: after the marker no earlier owner can append, so the tail read next is final.
    const changelog = this.newChangelog(partition);
    await during(`partition ${partition}: fencing its changelog`, () => changelog.fence(epoch));
    const restored = await during(`partition ${partition}: restoring it`, () => this.restore(partition, changelog));
    assert(restored.changelogSeq === changelog.lastSequence, `partition ${partition}: the restore ended at changelog sequence ${restored.changelogSeq}, past this owner's fence at ${changelog.lastSequence}`);
    this.changelogs.set(partition, changelog);
    this.epochs.set(partition, epoch);
    this.published.own(partition, restored.publishedWatermark);
    this.recording.own(partition, restored);
    this.actor.ownPartition(partition);
    this.schedule.own(partition);
    const republished = this.republish(partition, epoch);
    return {
      partition,
      changelogSeq: restored.changelogSeq,
      watermark: restored.watermark,
      publishedWatermark: restored.publishedWatermark,
      snapshotSeq: restored.snapshot?.changelogSeq,
      commits: restored.commits,
      bytes: restored.bytes,
      republished,
      tookMs: performance.now() - started,
    };
  }

  /**
   * Lets the partition go (its batches drained before). First its last
   * record: once the outcome stream acknowledged what was published, a
   * watermark-only record carries the complete published watermark (and
   * removes the outbox entries acknowledged), so the next owner resumes its
   * input after everything committed here. If that record cannot be appended
   * (fenced: another owner took the log, or the stream did not answer in
   * time), the release still completes: the next owner resumes after the
   * older mark and sees duplicates, never a loss.
   */
  async release(partition: number): Promise<void> {
    await this.owns.get(partition);
    if (this.changelogs.has(partition)) await this.lastRecord(partition);
    this.schedule.release(partition);
    this.actor.releasePartition(partition);
    this.store.releasePartitionOutbox(partition);
    this.recording.release(partition);
    this.changelogs.delete(partition);
    this.epochs.delete(partition);
    this.published.release(partition);
  }

  /**
   * Appends a removal record for each partition whose acknowledged outbox
   * entries wait (a partition with no batch since: its batches' records carry
   * them otherwise). In the exclusive chain: never beside an own or a release.
   */
  removeAcknowledgedOutbox(): Promise<void> {
    if (this.store.partitionsWithAcknowledgedOutbox().length === 0) return Promise.resolve();
    return this.exclusive(async () => {
      for (const partition of this.store.partitionsWithAcknowledgedOutbox()) {
        const removals = this.store.takeAcknowledgedOutbox(partition);
        const epoch = this.epochs.get(partition);
        if (epoch === undefined || removals.length === 0) continue; // not held (any more): its next owner publishes them again
        try {
          const changes = this.changesOf(partition, removals);
          const { position, bytes } = await this.recording.appendRecord(changes, this.published.of(partition));
          await applyPartitionChanges(this.store.root, partition, changes);
          this.schedule.committed(partition, { ...position, owner: this.owner, epoch }, bytes);
        } catch (error) {
          // Fenced (the partition is about to be released) or not answered: the entries stay, its next owner publishes them again.
          this.logger.warn({ err: error, partition, entries: removals.length }, 'acknowledged outbox entries not removed from the partition\'s changelog; its next owner publishes them again (duplicates the outcome stream drops)');
        }
      }
    });
  }

  /** A batch committed these watermarks (the actor's, per partition): returns what to call once the outcome stream has its outcomes. */
  committed(watermarks: ReadonlyMap<number, number>): () => void {
    return this.published.committed(watermarks);
  }

  /**
   * After a restore: publishes again every outbox entry of the partition its
   * last owner left (committed, not seen acknowledged), with their message
   * ids, so the outcome stream drops those it has; each acknowledged one is
   * removed with the partition's next record. Returns how many.
   */
  private republish(partition: number, epoch: number): number {
    let entries = 0;
    for (const { key, messages } of this.store.partitionOutboxEntries(partition)) {
      entries += 1;
      const outcomes = unpackOutbox(messages);
      if (this.outcomes === undefined) continue;
      this.outcomes.publish(outcomes, () => {
        if (this.epochs.get(partition) === epoch) this.store.acknowledgePartitionOutbox(partition, key);
      });
    }
    if (entries > 0) this.logger.info({ partition, entries }, 'partition restored with outcomes its last owner did not see acknowledged: published again');
    return entries;
  }

  /** See `release`: waits for the outcome stream (bounded), then the watermark-only record, if it says anything new. */
  private async lastRecord(partition: number): Promise<void> {
    const epoch = this.epochs.get(partition);
    assert(epoch !== undefined, `partition ${partition} held without an epoch`);
    try {
      const waitMs = this.outcomesLagging ? RELEASE_WAIT_WHILE_LAGGING_MS : RELEASE_PUBLISH_WAIT_MS;
      const settled = this.outcomes === undefined ? true : await this.outcomes.settled(waitMs);
      this.outcomesLagging = !settled;
      if (!settled) this.logger.warn({ partition, waitedMs: waitMs }, 'release: outcomes still not acknowledged; the next owner resumes after the older published watermark (duplicates, no loss)');
      // Acknowledgements the actor holds for its next commit reach the store's outbox bookkeeping (a commit of no partition).
      await this.actor.removePublishedOutbox();
    } catch (error) {
      this.logger.warn({ err: error, partition }, 'release: acknowledged outbox entries not handed to the store; the next owner publishes them again (duplicates the outcome stream drops)');
    }
    const removals = this.store.takeAcknowledgedOutbox(partition);
    const appended = this.recording.appended(partition);
    const published = this.published.of(partition);
    assert(published <= appended.watermark, `partition ${partition}: a published watermark (${published}) past the committed one (${appended.watermark})`);
    if (published <= appended.publishedWatermark && removals.length === 0) return; // the last record says it all already
    try {
      const changes = this.changesOf(partition, removals, appended.watermark);
      const waitMs = this.changelogLagging ? RELEASE_WAIT_WHILE_LAGGING_MS : RELEASE_APPEND_WAIT_MS;
      const appending = this.recording.appendRecord(changes, published);
      appending.catch(() => undefined); // it may settle after the wait gave up on it
      try {
        await withTimeout(appending, waitMs, `partition ${partition}: the release's watermark record`);
        this.changelogLagging = false;
      } catch (error) {
        this.changelogLagging = (error as { code?: unknown }).code === 'ERR_STREAM_PUBLISH';
        throw error;
      }
      await applyPartitionChanges(this.store.root, partition, changes);
      this.logger.debug({ partition, watermark: appended.watermark, publishedWatermark: published, removals: removals.length }, 'release: watermark record appended');
    } catch (error) {
      this.logger.warn({ err: error, partition }, 'release: the watermark record was not appended (fenced, or the changelog did not answer); the next owner resumes after the older published watermark (duplicates, no loss)');
    }
  }

  /** A record of the partition that writes nothing but removals of outbox entries (maybe none). */
  private changesOf(partition: number, removals: readonly Key[][], watermark = 0): PartitionChanges {
    return {
      partition,
      partitions: this.identity.partitions,
      storeFormat: this.identity.storeFormat,
      writes: removals.map((key) => [TREE_OUTBOX, [...key], null] as const),
      dueMark: null,
      watermark,
    };
  }

  private async restore(partition: number, changelog: PartitionChangelog): ReturnType<typeof restorePartition> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await restorePartition({ snapshots: this.snapshots, changelog, root: this.store.root, partition });
      } catch (error) {
        if ((error as { code?: unknown }).code !== 'ERR_CHANGELOG_RECORD' || attempt >= RESTORE_ATTEMPTS) throw error;
        this.logger.warn({ err: error, partition, attempt }, 'partition restore found a record missing; reading the newest snapshot again');
      }
    }
  }

  /** The schedule's take: only while this owner still holds the partition with the changelog it fenced. */
  private async snapshot(partition: number, position: SnapshotPosition): Promise<void> {
    const changelog = this.changelogs.get(partition);
    if (changelog === undefined || this.epochs.get(partition) !== position.epoch) return;
    const saved = await takeSnapshot({ snapshots: this.snapshots, root: this.store.root, partition, position, compact: changelog });
    this.logger.debug({ partition, changelogSeq: saved.changelogSeq, records: saved.records, bytes: saved.bytes }, 'partition snapshot saved, changelog compacted up to it');
  }
}

/** Says which step failed: the error crosses the worker boundary, and a bare "timeout" names nothing. */
async function during<T>(what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (error instanceof Error) error.message = `${what}: ${error.message}`;
    throw error;
  }
}

/** Rejects (ERR_STREAM_PUBLISH: an append not acknowledged in time) when `promise` takes longer than `timeoutMs`; the append itself goes on. */
async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new EngineError('ERR_STREAM_PUBLISH', `${what}: not appended within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const RESTORE_REQUEST_TIMEOUT_MS = 15_000;
/** Takeovers of one actor side by side (owning): each mostly waits on JetStream. */
const OWNS_IN_FLIGHT_MAX = 4;
/**
 * How long a release waits for the outcome stream to acknowledge what is in
 * flight (at most LOYALTY_OUTCOME_BATCHES_UNCONFIRMED_MAX batches, normally
 * milliseconds): past it the release goes on with the mark reached.
 */
const RELEASE_PUBLISH_WAIT_MS = 5_000;
/** How long a release waits for its watermark record's append (its retries for an unanswered stream last longer). */
const RELEASE_APPEND_WAIT_MS = 5_000;
/** Either wait once the last one ran out of time (the stream is likely still down). */
const RELEASE_WAIT_WHILE_LAGGING_MS = 100;
/** A failed snapshot of a partition is tried again after this (its counts are kept). */
const SNAPSHOT_RETRY_MS = 5_000;
/** A restore that found a record missing is tried this many times (a snapshot newer than the one read compacted the log). */
const RESTORE_ATTEMPTS = 3;
