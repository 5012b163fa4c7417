import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { PartitionChangelog } from '../cluster/changelog.js';
import { PublishedWatermarks } from '../cluster/published-watermarks.js';
import { changelogRecorder, restorePartition, takeSnapshot } from '../cluster/restore.js';
import { SnapshotSchedule, type SnapshotScheduleStats } from '../cluster/snapshot-schedule.js';
import { PartitionSnapshots, type SnapshotPosition } from '../cluster/snapshots.js';
import { assert } from '../domain/assert.js';
import { withCreateRetries } from '../transport/topology.js';
import type { Logger } from '../log.js';
import type { LmdbStore } from '../store/lmdb.js';
import type { Actor } from './actor.js';
import type { ActorWorkerData, RestoredPosition } from './protocol.js';

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
 */
export class ClusterPartitions {
  private readonly changelogs = new Map<number, PartitionChangelog>();
  private readonly published = new PublishedWatermarks();
  private chain: Promise<unknown> = Promise.resolve();

  private readonly schedule: SnapshotSchedule;
  private readonly epochs = new Map<number, number>();

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

  /** Runs `action` after every earlier one of the chain (sweeps, owns and releases never overlap). */
  exclusive<T>(action: () => Promise<T>): Promise<T> {
    const next = this.chain.then(action);
    this.chain = next.catch(() => undefined);
    return next;
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
    this.actor.ownPartition(partition);
    this.schedule.own(partition);
    return {
      partition,
      changelogSeq: restored.changelogSeq,
      watermark: restored.watermark,
      publishedWatermark: restored.publishedWatermark,
      snapshotSeq: restored.snapshot?.changelogSeq,
      commits: restored.commits,
      bytes: restored.bytes,
      tookMs: performance.now() - started,
    };
  }

  release(partition: number): void {
    this.schedule.release(partition);
    this.actor.releasePartition(partition);
    this.changelogs.delete(partition);
    this.epochs.delete(partition);
    this.published.release(partition);
  }

  /** A batch committed these watermarks (the actor's, per partition): returns what to call once the outcome stream has its outcomes. */
  committed(watermarks: ReadonlyMap<number, number>): () => void {
    return this.published.committed(watermarks);
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

const RESTORE_REQUEST_TIMEOUT_MS = 15_000;
/** A failed snapshot of a partition is tried again after this (its counts are kept). */
const SNAPSHOT_RETRY_MS = 5_000;
/** A restore that found a record missing is tried this many times (a snapshot newer than the one read compacted the log). */
const RESTORE_ATTEMPTS = 3;
