import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/nats-core';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RestoredPosition } from '../actors/protocol.js';
import { assert } from '../domain/assert.js';

/**
 * Cluster mode's metrics (issue 17, docs/operations.md "What to monitor in a
 * cluster"), in the engine's registry beside EngineMetrics' and registered only
 * in cluster mode: a single instance shows none of them rather than zeros that
 * mean nothing. Every label is from a small fixed set (a step, a reason kind,
 * a result), never a partition or an instance id: which partition moved is the
 * log's business, how often partitions move is the metrics'.
 *
 * Fed by hooks where the events already happen, with no I/O of its own except
 * `watchSnapshots`: PartitionConsumers' options (onOwned, onAcquireFailed,
 * onChange), its Ingests' onFatal (a commit refused as fenced),
 * and PartitionOwnership's (through OwnershipThread) onLost, onError,
 * onSlowRound and onRenewed.
 */

/** Why a lease was lost, as PartitionOwnership says it (its reason text), kept to a fixed set. */
export const LOSS_REASONS = ['expired', 'refused', 'other'] as const;
export type LossReason = (typeof LOSS_REASONS)[number];

/** The takeover steps of PartitionConsumers (AcquireStep), plus anything else as "other". */
export const ACQUIRE_STEPS = ['restore', 'consumer', 'intake', 'other'] as const;

/** What the gauges read at each scrape (the engine's own state: never a copy that could drift). */
export interface ClusterGaugeSources {
  /** Partitions restored here and consuming (PartitionConsumers.consuming().length). */
  readonly consuming: () => number;
  /** Partitions won and not consuming yet (restoring, or their consumer being recreated). */
  readonly restoring: () => number;
  /** Leases this instance holds now (PartitionOwnership.owned().size). */
  readonly leasesHeld: () => number;
}

/**
 * The kind of a loss from PartitionOwnership's reason text ("the lease was not
 * renewed in time …", "the lease renewal was refused: …"). Matched loosely, so
 * a reworded reason still lands in its kind; an unknown one is "other", never
 * a new label value.
 */
export function lossReasonOf(reason: string): LossReason {
  if (/not renewed in time|validity|expired/i.test(reason)) return 'expired';
  if (/refused|wrong last sequence|moved/i.test(reason)) return 'refused';
  return 'other';
}

/**
 * True when `error` (or a cause of it) is a changelog append refused because
 * another owner fenced the partition. The actor's error crosses the thread
 * boundary structured-cloned: its `code` may be lost, but ActorFailedError
 * names the store's code in its message ("… failed (ERR_PARTITION_FENCED): …"),
 * so the message is looked at too.
 */
export function isFencedError(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    const candidate = current as { code?: unknown; reason?: unknown; name?: unknown; message?: unknown; cause?: unknown };
    if (candidate.code === 'ERR_PARTITION_FENCED' || candidate.reason === 'ERR_PARTITION_FENCED' || candidate.name === 'PartitionFencedError') return true;
    if (typeof candidate.message === 'string' && candidate.message.includes('ERR_PARTITION_FENCED')) return true;
    current = candidate.cause;
  }
  return false;
}

export class ClusterMetrics {
  private sources: ClusterGaugeSources | undefined;
  /** The consuming set told last: a partition that leaves it was released (handed over, lost or stopped). */
  private consumingNow = new Set<number>();

  readonly partitionsOwned: Gauge;
  readonly partitionsRestoring: Gauge;
  readonly leasesHeld: Gauge;

  readonly acquisitions: Counter;
  readonly acquisitionFailures: Counter<'step'>;
  readonly releases: Counter;
  readonly losses: Counter<'reason'>;

  readonly restores: Counter<'source'>;
  readonly restoreDuration: Histogram;
  readonly restoreRecords: Histogram;
  readonly restoreBytes: Counter;
  readonly consumerResetDuration: Histogram;

  readonly fencedAppends: Counter;
  readonly roundsFailed: Counter;
  readonly roundsSlow: Counter<'cause'>;
  readonly renewalDuration: Histogram;

  readonly snapshots: Counter;
  readonly snapshotBytes: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    const sources = () => this.sources;
    this.partitionsOwned = new Gauge({
      name: 'loyalty_cluster_partitions_owned',
      help: 'Partitions this instance owns and consumes now: lease held, state restored, intake running (the same count as /health partitionsConsuming). Summed over the instances it is the partition count once a handover is over.',
      registers,
      collect() {
        const read = sources();
        if (read !== undefined) this.set(read.consuming());
      },
    });
    this.partitionsRestoring = new Gauge({
      name: 'loyalty_cluster_partitions_restoring',
      help: 'Partitions whose lease this instance won and that are not consuming yet (fence, restore, consumer recreated).',
      registers,
      collect() {
        const read = sources();
        if (read !== undefined) this.set(read.restoring());
      },
    });
    this.leasesHeld = new Gauge({
      name: 'loyalty_cluster_leases_held',
      help: 'Partition leases this instance holds now (owned plus restoring plus draining for a handover).',
      registers,
      collect() {
        const read = sources();
        if (read !== undefined) this.set(read.leasesHeld());
      },
    });

    this.acquisitions = new Counter({
      name: 'loyalty_cluster_partition_acquisitions_total',
      help: 'Partitions taken over by this instance: lease won, changelog fenced, state restored, consuming.',
      registers,
    });
    this.acquisitionFailures = new Counter({
      name: 'loyalty_cluster_partition_acquisition_failures_total',
      help: 'Takeovers that failed at a step (restore, consumer, intake: JetStream not answering in time); the lease is given up and the partition is taken again at a later tick.',
      labelNames: ['step'] as const,
      registers,
    });
    this.releases = new Counter({
      name: 'loyalty_cluster_partition_releases_total',
      help: 'Partitions this instance stopped consuming, for any cause: handed over to a joining instance, lost, or at a stop.',
      registers,
    });
    this.losses = new Counter({
      name: 'loyalty_cluster_partition_losses_total',
      help: 'Leases lost rather than handed over: expired (not renewed within their validity: the main thread busy, or NATS unreachable) or refused (a renewal found the lease moved on).',
      labelNames: ['reason'] as const,
      registers,
    });

    this.restores = new Counter({
      name: 'loyalty_cluster_restores_total',
      help: 'Partition states restored at a takeover, by source: snapshot (a snapshot and the changelog tail after it) or changelog (the tail alone, no snapshot yet).',
      labelNames: ['source'] as const,
      registers,
    });
    this.restoreDuration = new Histogram({
      name: 'loyalty_cluster_restore_duration_seconds',
      help: "A partition's fence and restore (snapshot import and changelog replay) in its actor thread, at a takeover.",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.restoreRecords = new Histogram({
      name: 'loyalty_cluster_restore_records_replayed',
      help: 'Changelog records replayed by one restore (commit records after the snapshot, fence markers passed): grows when snapshots fall behind.',
      buckets: [0, 1, 10, 50, 100, 500, 1_000, 2_000, 5_000, 10_000, 50_000],
      registers,
    });
    this.restoreBytes = new Counter({
      name: 'loyalty_cluster_restore_replayed_bytes_total',
      help: 'Bytes of changelog records replayed by restores.',
      registers,
    });
    this.consumerResetDuration = new Histogram({
      name: 'loyalty_cluster_consumer_reset_duration_seconds',
      help: "Recreating a partition's durable consumer after its published watermark, at a takeover.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });

    this.fencedAppends = new Counter({
      name: 'loyalty_cluster_fenced_appends_total',
      help: "Batches whose changelog append was refused because another instance fenced the partition (ERR_PARTITION_FENCED): this instance acted past its lease (a pause). Nothing of them was committed; the engine stops (crash-only).",
      registers,
    });
    this.roundsFailed = new Counter({
      name: 'loyalty_cluster_ownership_rounds_failed_total',
      help: 'Ownership rounds (heartbeat, renewals, rebalance) or lease operations that failed (NATS away or slow); the next tick tries again.',
      registers,
    });
    this.roundsSlow = new Counter({
      name: 'loyalty_cluster_ownership_rounds_slow_total',
      help: 'Ownership rounds late or long past a third of the lease TTL, by cause: late (the timer fired late: the main thread was busy) or long (the round itself took long: NATS slow).',
      labelNames: ['cause'] as const,
      registers,
    });
    this.renewalDuration = new Histogram({
      name: 'loyalty_cluster_lease_renewal_duration_seconds',
      help: "A confirmed lease renewal's compare-and-set in the leases bucket (a renewal that fails is a failed round; one refused, a loss). Near the tick or the TTL's third, leases are at risk.",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });

    this.snapshots = new Counter({
      name: 'loyalty_cluster_snapshots_total',
      help: 'Partition snapshots saved by this instance to the snapshot object store.',
      registers,
    });
    this.snapshotBytes = new Counter({
      name: 'loyalty_cluster_snapshot_bytes_total',
      help: 'Bytes of the partition snapshots saved by this instance.',
      registers,
    });
  }

  /** The gauges' sources (set once the engine has them). */
  observe(sources: ClusterGaugeSources): void {
    this.sources = sources;
  }

  /** PartitionConsumers' onOwned: a takeover is complete. */
  owned(position: RestoredPosition, consumerMs: number): void {
    this.acquisitions.inc();
    this.restores.inc({ source: position.snapshotSeq === undefined ? 'changelog' : 'snapshot' });
    this.restoreDuration.observe(Math.max(0, position.tookMs) / 1000);
    this.restoreRecords.observe(position.commits);
    this.restoreBytes.inc(position.bytes);
    this.consumerResetDuration.observe(Math.max(0, consumerMs) / 1000);
  }

  /** PartitionConsumers' onAcquireFailed. */
  acquireFailed(step: string): void {
    this.acquisitionFailures.inc({ step: (ACQUIRE_STEPS as readonly string[]).includes(step) ? step : 'other' });
  }

  /** PartitionConsumers' onChange: every partition that left the consuming set is a release. */
  changed(consuming: readonly number[]): void {
    const next = new Set(consuming);
    let released = 0;
    for (const partition of this.consumingNow) if (!next.has(partition)) released += 1;
    this.consumingNow = next;
    if (released > 0) this.releases.inc(released);
    this.partitionsOwned.set(next.size);
  }

  /** PartitionOwnership's onLost (with its reason text). */
  lost(reason: string): void {
    this.losses.inc({ reason: lossReasonOf(reason) });
  }

  /** A partition Ingest's onFatal: counts the failure when it is a fenced append; true when it was. */
  commitFailed(error: unknown): boolean {
    const fenced = isFencedError(error);
    if (fenced) this.fencedAppends.inc();
    return fenced;
  }

  /** PartitionOwnership's onError. */
  roundFailed(): void {
    this.roundsFailed.inc();
  }

  /** PartitionOwnership's onSlowRound: late when the timer fired late by more than the round took. */
  slowRound(lateMs: number, tookMs: number): void {
    this.roundsSlow.inc({ cause: lateMs >= tookMs ? 'late' : 'long' });
  }

  /** PartitionOwnership's onRenewed (through OwnershipThread): a confirmed renewal's compare-and-set took `tookMs`. */
  renewed(tookMs: number): void {
    assert(Number.isFinite(tookMs) && tookMs >= 0, 'a renewal takes a finite, non-negative time');
    this.renewalDuration.observe(tookMs / 1000);
  }

  snapshotSaved(bytes: number): void {
    assert(Number.isFinite(bytes) && bytes >= 0, 'a snapshot has a finite, non-negative size');
    this.snapshots.inc();
    this.snapshotBytes.inc(bytes);
  }
}

/**
 * Counts the snapshots this instance saves (loyalty_cluster_snapshots_total,
 * loyalty_cluster_snapshot_bytes_total) by watching the snapshot object
 * store's metadata from the main thread: the actor threads take snapshots and
 * their replies carry no snapshot figures, while every save puts one metadata
 * message naming its owner (src/cluster/snapshots.ts). One ordered consumer on
 * the bucket's metadata subjects, new puts only; it ends when the connection
 * closes. A watch that cannot start is reported, not fatal: these are metrics.
 */
export async function watchSnapshots(nc: NatsConnection, options: { readonly bucket: string; readonly instanceId: string; readonly metrics: ClusterMetrics; readonly onError: (error: unknown) => void }): Promise<void> {
  try {
    const store = await new Objm(nc).open(options.bucket);
    const updates = await store.watch({ includeHistory: false, ignoreDeletes: true });
    for await (const info of updates) {
      if (info === null || info.deleted || info.metadata?.owner !== options.instanceId) continue;
      options.metrics.snapshotSaved(info.size);
    }
  } catch (error) {
    // Ending with the connection (the engine's stop) is the watch's normal end, not a failure.
    if (!nc.isClosed() && !nc.isDraining()) options.onError(error);
  }
}
