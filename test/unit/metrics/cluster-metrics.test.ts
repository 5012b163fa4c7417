import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { RestoredPosition } from '../../../src/actors/protocol.js';
import { EngineError } from '../../../src/config/errors.js';
import { ClusterMetrics, isFencedError, lossReasonOf } from '../../../src/metrics/cluster-metrics.js';
import { EngineMetrics } from '../../../src/metrics/metrics.js';

/** One sample read back through prom-client: `suffix` for histograms (_sum, _count, _bucket), exact labels (le aside unless given). */
async function valueOf(registry: Registry, name: string, labels: Record<string, string> = {}, suffix = ''): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  expect(metric, name).toBeDefined();
  const data = await metric!.get();
  const matches = (sampleLabels: Record<string, unknown>) => {
    const keys = Object.keys(sampleLabels).filter((key) => key !== 'le' || 'le' in labels);
    return keys.length === Object.keys(labels).length && keys.every((key) => String(sampleLabels[key]) === labels[key]);
  };
  return data.values.find((value) => ((value as { metricName?: string }).metricName ?? name) === `${name}${suffix}` && matches(value.labels))?.value;
}

function position(overrides: Partial<RestoredPosition> = {}): RestoredPosition {
  return { partition: 3, changelogSeq: 40, watermark: 900, publishedWatermark: 880, snapshotSeq: 30, commits: 12, bytes: 48_000, tookMs: 150, ...overrides } as RestoredPosition;
}

describe('ClusterMetrics', () => {
  it('registers its metrics in the engine\'s registry, each name once, none of them in a single instance\'s', async () => {
    const single = new EngineMetrics();
    expect((await single.registry.getMetricsAsJSON()).filter((metric) => metric.name.startsWith('loyalty_cluster_'))).toEqual([]);
    const engine = new EngineMetrics();
    new ClusterMetrics(engine.registry);
    const names = (await engine.registry.getMetricsAsJSON()).map((metric) => metric.name).filter((name) => name.startsWith('loyalty_cluster_'));
    expect(names.sort()).toEqual([
      'loyalty_cluster_consumer_reset_duration_seconds',
      'loyalty_cluster_fenced_appends_total',
      'loyalty_cluster_lease_renewal_duration_seconds',
      'loyalty_cluster_leases_held',
      'loyalty_cluster_ownership_rounds_failed_total',
      'loyalty_cluster_ownership_rounds_slow_total',
      'loyalty_cluster_partition_acquisition_failures_total',
      'loyalty_cluster_partition_acquisitions_total',
      'loyalty_cluster_partition_losses_total',
      'loyalty_cluster_partition_releases_total',
      'loyalty_cluster_partitions_owned',
      'loyalty_cluster_partitions_restoring',
      'loyalty_cluster_restore_duration_seconds',
      'loyalty_cluster_restore_records_replayed',
      'loyalty_cluster_restore_replayed_bytes_total',
      'loyalty_cluster_restores_total',
      'loyalty_cluster_snapshot_bytes_total',
      'loyalty_cluster_snapshots_total',
    ]);
    // Prometheus conventions: counters end in _total, durations are seconds, sizes bytes.
    for (const metric of await engine.registry.getMetricsAsJSON()) {
      if (!metric.name.startsWith('loyalty_cluster_')) continue;
      if (String(metric.type) === 'counter') expect(metric.name).toMatch(/_total$/);
      if (metric.name.includes('duration')) expect(metric.name).toMatch(/_seconds$/);
    }
    // A second one in the same registry is a programmer error (the same names twice), refused by prom-client.
    expect(() => new ClusterMetrics(engine.registry)).toThrow(/already been registered/);
  });

  it('reads the gauges from their sources at each scrape', async () => {
    const registry = new Registry();
    const metrics = new ClusterMetrics(registry);
    let consuming = 5;
    metrics.observe({ consuming: () => consuming, restoring: () => 2, leasesHeld: () => 7 });
    expect(await valueOf(registry, 'loyalty_cluster_partitions_owned')).toBe(5);
    expect(await valueOf(registry, 'loyalty_cluster_partitions_restoring')).toBe(2);
    expect(await valueOf(registry, 'loyalty_cluster_leases_held')).toBe(7);
    consuming = 32;
    expect(await valueOf(registry, 'loyalty_cluster_partitions_owned')).toBe(32);
    expect(await registry.metrics()).toContain('loyalty_cluster_partitions_owned 32');
  });

  it('counts a takeover with its restore figures, and a release for every partition that leaves the consuming set', async () => {
    const registry = new Registry();
    const metrics = new ClusterMetrics(registry);
    metrics.owned(position(), 25);
    metrics.owned(position({ partition: 4, snapshotSeq: undefined, commits: 0, bytes: 0, tookMs: 4_000 }), 1_500);
    expect(await valueOf(registry, 'loyalty_cluster_partition_acquisitions_total')).toBe(2);
    expect(await valueOf(registry, 'loyalty_cluster_restores_total', { source: 'snapshot' })).toBe(1);
    expect(await valueOf(registry, 'loyalty_cluster_restores_total', { source: 'changelog' })).toBe(1);
    expect(await valueOf(registry, 'loyalty_cluster_restore_duration_seconds', {}, '_sum')).toBeCloseTo(4.15, 6);
    expect(await valueOf(registry, 'loyalty_cluster_restore_duration_seconds', { le: '0.25' }, '_bucket')).toBe(1);
    expect(await valueOf(registry, 'loyalty_cluster_restore_records_replayed', {}, '_sum')).toBe(12);
    expect(await valueOf(registry, 'loyalty_cluster_restore_records_replayed', { le: '0' }, '_bucket')).toBe(1);
    expect(await valueOf(registry, 'loyalty_cluster_restore_replayed_bytes_total')).toBe(48_000);
    expect(await valueOf(registry, 'loyalty_cluster_consumer_reset_duration_seconds', {}, '_sum')).toBeCloseTo(1.525, 6);

    // Without sources, the gauge follows onChange.
    metrics.changed([3]);
    metrics.changed([3, 4]);
    expect(await valueOf(registry, 'loyalty_cluster_partition_releases_total')).toBe(0);
    expect(await valueOf(registry, 'loyalty_cluster_partitions_owned')).toBe(2);
    metrics.changed([4]);
    metrics.changed([4, 9]);
    metrics.changed([]);
    expect(await valueOf(registry, 'loyalty_cluster_partition_releases_total')).toBe(3);
    expect(await valueOf(registry, 'loyalty_cluster_partitions_owned')).toBe(0);
  });

  it('keeps the labels of losses, failed steps and slow rounds to their fixed sets', async () => {
    const registry = new Registry();
    const metrics = new ClusterMetrics(registry);
    // PartitionOwnership's reason texts.
    metrics.lost('the lease was not renewed in time (paused, or NATS unreachable): it may have expired and moved');
    metrics.lost('the lease renewal was refused: wrong last sequence: 812');
    metrics.lost('member 4711 did something never seen before');
    expect(await valueOf(registry, 'loyalty_cluster_partition_losses_total', { reason: 'expired' })).toBe(1);
    expect(await valueOf(registry, 'loyalty_cluster_partition_losses_total', { reason: 'refused' })).toBe(1);
    expect(await valueOf(registry, 'loyalty_cluster_partition_losses_total', { reason: 'other' })).toBe(1);
    expect(lossReasonOf('')).toBe('other');

    for (const step of ['restore', 'restore', 'consumer', 'intake', 'a step added later']) metrics.acquireFailed(step);
    expect(await valueOf(registry, 'loyalty_cluster_partition_acquisition_failures_total', { step: 'restore' })).toBe(2);
    expect(await valueOf(registry, 'loyalty_cluster_partition_acquisition_failures_total', { step: 'other' })).toBe(1);
    expect((await registry.getSingleMetric('loyalty_cluster_partition_acquisition_failures_total')!.get()).values).toHaveLength(4);

    metrics.slowRound(2_500, 10); // the timer fired late: the thread was busy
    metrics.slowRound(0, 4_000); // the round itself was long: NATS slow
    metrics.slowRound(1_200, 1_300);
    metrics.roundFailed();
    metrics.roundFailed();
    expect(await valueOf(registry, 'loyalty_cluster_ownership_rounds_slow_total', { cause: 'late' })).toBe(1);
    expect(await valueOf(registry, 'loyalty_cluster_ownership_rounds_slow_total', { cause: 'long' })).toBe(2);
    expect(await valueOf(registry, 'loyalty_cluster_ownership_rounds_failed_total')).toBe(2);

    metrics.renewed(1.5);
    metrics.renewed(40);
    expect(await valueOf(registry, 'loyalty_cluster_lease_renewal_duration_seconds', {}, '_count')).toBe(2);
    expect(await valueOf(registry, 'loyalty_cluster_lease_renewal_duration_seconds', { le: '0.0025' }, '_bucket')).toBe(1);
    expect(() => metrics.renewed(Number.NaN)).toThrow();

    metrics.snapshotSaved(2_500_000);
    metrics.snapshotSaved(500_000);
    expect(await valueOf(registry, 'loyalty_cluster_snapshots_total')).toBe(2);
    expect(await valueOf(registry, 'loyalty_cluster_snapshot_bytes_total')).toBe(3_000_000);
    expect(() => metrics.snapshotSaved(-1)).toThrow();
  });

  it('counts a commit refused as fenced, as it arrives from the actor thread, and nothing else', async () => {
    const registry = new Registry();
    const metrics = new ClusterMetrics(registry);
    const fenced = new EngineError('ERR_PARTITION_FENCED', 'partition 5: the changelog was fenced by epoch 812');
    // What crosses from the actor thread: the ActorFailedError's message names the store's code, its code property may be gone.
    const cloned = structuredClone(new Error('actor commit of batch 7 failed (ERR_PARTITION_FENCED): partition 5: the changelog was fenced by epoch 812'));
    expect(isFencedError(fenced)).toBe(true);
    expect(isFencedError(new Error('actor commit of batch 7 failed', { cause: fenced }))).toBe(true);
    expect(isFencedError(cloned)).toBe(true);
    expect(isFencedError(new EngineError('ERR_STORE_DISK_FULL', 'no space left'))).toBe(false);
    expect(isFencedError(undefined)).toBe(false);
    expect(isFencedError('a string')).toBe(false);
    expect(metrics.commitFailed(cloned)).toBe(true);
    expect(metrics.commitFailed(new EngineError('ERR_INTAKE_GAP', 'too many lost'))).toBe(false);
    expect(await valueOf(registry, 'loyalty_cluster_fenced_appends_total')).toBe(1);
  });
});
