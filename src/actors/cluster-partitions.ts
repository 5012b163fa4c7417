import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { PartitionChangelog } from '../cluster/changelog.js';
import { PublishedWatermarks } from '../cluster/published-watermarks.js';
import { changelogRecorder, restorePartition } from '../cluster/restore.js';
import { PartitionSnapshots } from '../cluster/snapshots.js';
import { assert } from '../domain/assert.js';
import { withCreateRetries } from '../transport/topology.js';
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
 */
export class ClusterPartitions {
  private readonly changelogs = new Map<number, PartitionChangelog>();
  private readonly published = new PublishedWatermarks();
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly store: LmdbStore,
    private readonly actor: Actor,
    private readonly snapshots: PartitionSnapshots,
    private readonly newChangelog: (partition: number) => PartitionChangelog,
  ) {
    store.setChangeRecorder(changelogRecorder(this.changelogs, undefined, (partition) => this.published.of(partition)).recorder);
  }

  static async open(nc: NatsConnection, store: LmdbStore, actor: Actor, data: ActorWorkerData): Promise<ClusterPartitions> {
    const { settings } = data;
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc, { timeout: 30_000 });
    const snapshots = await withCreateRetries(() => PartitionSnapshots.open(nc, { bucket: settings.snapshotBucket, replicas: settings.clusterReplicas }));
    return new ClusterPartitions(store, actor, snapshots, (partition) => new PartitionChangelog(js, jsm, settings.changelogStreamName, settings.subjectPrefix, partition, data.instanceId));
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
    await changelog.fence(epoch);
    const restored = await restorePartition({ snapshots: this.snapshots, changelog, root: this.store.root, partition });
    assert(restored.changelogSeq === changelog.lastSequence, `partition ${partition}: the restore ended at changelog sequence ${restored.changelogSeq}, past this owner's fence at ${changelog.lastSequence}`);
    this.changelogs.set(partition, changelog);
    this.published.own(partition, restored.publishedWatermark);
    this.actor.ownPartition(partition);
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
    this.actor.releasePartition(partition);
    this.changelogs.delete(partition);
    this.published.release(partition);
  }

  /** A batch committed these watermarks (the actor's, per partition): returns what to call once the outcome stream has its outcomes. */
  committed(watermarks: ReadonlyMap<number, number>): () => void {
    return this.published.committed(watermarks);
  }
}
