import { describe, expect, it } from 'vitest';
import type { BatchResult, DeadLetter } from '../../../src/actors/actor.js';
import { EngineMetrics } from '../../../src/metrics/metrics.js';

function letter(kind: DeadLetter['kind'], reason: string): DeadLetter {
  return { streamSequence: 1, memberToken: 'm', kind, reason, encoding: 0, payload: new Uint8Array() };
}

function batchResult(overrides: Partial<BatchResult> = {}): BatchResult {
  return {
    batch: 1,
    committedSequences: Float64Array.of(1, 2, 3),
    publishedAtMs: Float64Array.of(1_000, 1_500, 2_000),
    deadLetters: [letter('oversized', 'payload of 9 bytes exceeds the limit of 8'), letter('schema', 'amountMinor: Too small')],
    counts: { 'purchase|applied': 2, 'purchase|duplicate': 1, 'unknown|invalid': 1, 'purchase|invalid': 1 },
    commitSeconds: 0.003,
    applySeconds: 0.0007,
    cachedMembers: 1234,
    outcomeCount: 5,
    heapUsedBytes: 1_000_000,
    ...overrides,
  };
}

/** One sample of a metric, read back through prom-client: name suffix for histograms (_sum, _count), exact labels. */
async function valueOf(metrics: EngineMetrics, name: string, labels: Record<string, string> = {}, suffix = ''): Promise<number | undefined> {
  const metric = metrics.registry.getSingleMetric(name);
  expect(metric, name).toBeDefined();
  const data = await metric!.get();
  const matches = (sampleLabels: Record<string, unknown>) => {
    const keys = Object.keys(sampleLabels).filter((key) => key !== 'le');
    return keys.length === Object.keys(labels).length && keys.every((key) => String(sampleLabels[key]) === labels[key]);
  };
  const sample = data.values.find((value) => ((value as { metricName?: string }).metricName ?? name) === `${name}${suffix}` && matches(value.labels));
  return sample?.value;
}

describe('EngineMetrics.recordBatch', () => {
  it('counts events by type and result', async () => {
    const metrics = new EngineMetrics();
    metrics.recordBatch(0, batchResult(), 3_000);
    metrics.recordBatch(1, batchResult({ counts: { 'purchase|applied': 5 } }), 3_000);
    expect(await valueOf(metrics, 'loyalty_events_total', { type: 'purchase', result: 'applied' })).toBe(7);
    expect(await valueOf(metrics, 'loyalty_events_total', { type: 'purchase', result: 'duplicate' })).toBe(1);
    expect(await valueOf(metrics, 'loyalty_events_total', { type: 'unknown', result: 'invalid' })).toBe(1);
    expect(await valueOf(metrics, 'loyalty_events_total', { type: 'purchase', result: 'invalid' })).toBe(1);
    expect(await valueOf(metrics, 'loyalty_events_total', { type: 'purchase', result: 'rejected' })).toBeUndefined();
  });

  it('counts dead letters by reason kind', async () => {
    const metrics = new EngineMetrics();
    metrics.recordBatch(0, batchResult(), 3_000);
    expect(await valueOf(metrics, 'loyalty_dead_letters_total', { reason: 'oversized' })).toBe(1);
    expect(await valueOf(metrics, 'loyalty_dead_letters_total', { reason: 'schema' })).toBe(1);
    const text = await metrics.registry.getSingleMetricAsString('loyalty_dead_letters_total');
    expect(text).toContain('loyalty_dead_letters_total{reason="oversized"} 1');
  });

  it('observes end-to-end commit latency per committed event, in seconds', async () => {
    const metrics = new EngineMetrics();
    // Published at 1.0 s, 1.5 s and 2.0 s, committed at 3.0 s: 2.0 + 1.5 + 1.0 s.
    metrics.recordBatch(0, batchResult(), 3_000);
    expect(await valueOf(metrics, 'loyalty_event_commit_latency_seconds', {}, '_count')).toBe(3);
    expect(await valueOf(metrics, 'loyalty_event_commit_latency_seconds', {}, '_sum')).toBeCloseTo(4.5, 9);
    const text = await metrics.registry.getSingleMetricAsString('loyalty_event_commit_latency_seconds');
    expect(text).toContain('loyalty_event_commit_latency_seconds_bucket{le="1"} 1');
    expect(text).toContain('loyalty_event_commit_latency_seconds_bucket{le="2.5"} 3');
  });

  it('never observes a negative latency (clock skew between the server and the engine)', async () => {
    const metrics = new EngineMetrics();
    metrics.recordBatch(0, batchResult({ publishedAtMs: Float64Array.of(5_000) }), 3_000);
    expect(await valueOf(metrics, 'loyalty_event_commit_latency_seconds', {}, '_sum')).toBe(0);
  });

  it('observes the batch size (committed and dead-lettered), commit and apply durations per actor, cache size and outcomes', async () => {
    const metrics = new EngineMetrics();
    metrics.recordBatch(2, batchResult(), 3_000);
    metrics.recordBatch(2, batchResult({ cachedMembers: 99, outcomeCount: 1 }), 3_000);
    expect(await valueOf(metrics, 'loyalty_batch_size_events', {}, '_sum')).toBe(10);
    expect(await valueOf(metrics, 'loyalty_batch_size_events', {}, '_count')).toBe(2);
    expect(await valueOf(metrics, 'loyalty_store_commit_duration_seconds', { actor: '2' }, '_sum')).toBeCloseTo(0.006, 9);
    expect(await valueOf(metrics, 'loyalty_batch_apply_duration_seconds', { actor: '2' }, '_count')).toBe(2);
    expect(await valueOf(metrics, 'loyalty_actor_cached_members', { actor: '2' })).toBe(99);
    expect(await valueOf(metrics, 'loyalty_outcomes_total')).toBe(6);
    expect(await valueOf(metrics, 'loyalty_store_commit_duration_seconds', { actor: '0' }, '_count')).toBeUndefined();
  });

  it('registers every engine metric in its own registry, with default process metrics beside them', async () => {
    const metrics = new EngineMetrics();
    const names = (await metrics.registry.getMetricsAsJSON()).map((metric) => metric.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'loyalty_events_total',
        'loyalty_event_commit_latency_seconds',
        'loyalty_batch_size_events',
        'loyalty_store_commit_duration_seconds',
        'loyalty_batch_apply_duration_seconds',
        'loyalty_actor_batches_in_flight',
        'loyalty_actor_pending_events',
        'loyalty_actor_cached_members',
        'loyalty_dead_letters_total',
        'loyalty_consumer_pending_messages',
        'loyalty_ack_pending_messages',
        'loyalty_outcomes_total',
        'loyalty_acks_total',
        'loyalty_deliveries_lost_total',
        'loyalty_redeliveries_skipped_total',
        'loyalty_sweep_members_total',
        'loyalty_sweep_chunk_duration_seconds',
        'process_cpu_user_seconds_total',
      ]),
    );
    // Two engines in one process (tests) do not share series.
    const other = new EngineMetrics();
    metrics.acks.inc(3);
    expect(await valueOf(other, 'loyalty_acks_total')).toBe(0);
    expect(await valueOf(metrics, 'loyalty_acks_total')).toBe(3);
  });
});

describe('EngineMetrics.recordSweep', () => {
  it('counts scanned and swept members, observes the chunk and counts its outcomes', async () => {
    const metrics = new EngineMetrics();
    metrics.recordSweep({ scanned: 5_000, swept: 12, outcomeCount: 30, finished: false }, 0.2);
    metrics.recordSweep({ scanned: 700, swept: 0, outcomeCount: 0, finished: true }, 0.05);
    expect(await valueOf(metrics, 'loyalty_sweep_members_total', { result: 'scanned' })).toBe(5_700);
    expect(await valueOf(metrics, 'loyalty_sweep_members_total', { result: 'swept' })).toBe(12);
    expect(await valueOf(metrics, 'loyalty_sweep_chunk_duration_seconds', {}, '_count')).toBe(2);
    expect(await valueOf(metrics, 'loyalty_sweep_chunk_duration_seconds', {}, '_sum')).toBeCloseTo(0.25, 9);
    expect(await valueOf(metrics, 'loyalty_outcomes_total')).toBe(30);
  });
});
