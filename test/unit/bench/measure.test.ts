import { describe, expect, it } from 'vitest';
import { baselinePoints } from '../../../bench/baselines/postgres-ledger.js';
import { parseCount, parseMix, UsageError } from '../../../bench/cli/args.js';
import { purchasesOnlyModel } from '../../../bench/generator/program-model.js';
import { parsePrometheusText } from '../../../bench/measure/metrics-scraper.js';
import { eventIdIn, kindFromSubject, OutcomeCollector } from '../../../bench/measure/outcomes.js';
import { median, ratio } from '../../../bench/measure/stats.js';
import { bar } from '../../../bench/report/progress.js';
import { bestWindowRate, fillTimelineLatencies, isSaturated, type TimelinePoint } from '../../../bench/scenarios/engine-run.js';

const encode = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value));

describe('OutcomeCollector', () => {
  it('times the first outcome of each event and keeps its balances and rejection code', () => {
    const collector = new OutcomeCollector('r1', 3, 'points');
    collector.publishTimesMs.set([100, 110, 120]);
    const balance = { kind: 'balance', currency: 'points', spendable: 50, pending: 7, qualifying: 57, debt: 0 };
    collector.handle('loyalty.outcome.membership.m1', encode({ kind: 'membership', eventId: 'er1-1', action: 'enrolled' }), 130);
    collector.handle('loyalty.outcome.balance.m1', encode({ ...balance, eventId: 'er1-1' }), 131);
    collector.handle('loyalty.outcome.balance.m1', encode({ ...balance, eventId: 'er1-1' }), 140);
    collector.handle('loyalty.outcome.balance.m2', encode({ ...balance, eventId: 'er1-0', spendable: 7 }), 150);
    collector.handle('loyalty.outcome.rejected.m3', encode({ kind: 'rejected', eventId: 'er1-2', code: 'INSUFFICIENT_POINTS', reason: 'why' }), 160);
    collector.handle('loyalty.outcome.balance.m4', encode({ ...balance, eventId: 'eother-0' }), 170);
    collector.handle('loyalty.outcome.balance.m4', Buffer.from('not json'), 170);
    expect(collector.counts.eventsDone).toBe(3);
    expect(collector.counts.duplicateOutcomes).toBe(1);
    expect(collector.counts.foreign).toBe(1);
    expect(collector.counts.unparsable).toBe(1);
    expect(collector.counts.byKind).toEqual({ membership: 1, balance: 5, rejected: 1 });
    expect(Array.from(collector.latenciesMs())).toEqual([50, 20, 40]);
    expect([collector.spendable[1], collector.pending[1], collector.qualifying[1], collector.debt[1]]).toEqual([50, 7, 57, 0]);
    expect(collector.spendable[0]).toBe(7);
    expect(collector.hadBalance(2)).toBe(false);
    expect(collector.rejectionOf(2)).toBe('INSUFFICIENT_POINTS');
    expect(collector.rejectionOf(1)).toBeUndefined();
    expect(collector.rejectionCodes).toEqual({ INSUFFICIENT_POINTS: 1 });
    expect(collector.doneTimeAtFraction(0.5)).toBe(150);
    expect(collector.takeRecentLatencies()).toEqual([20, 50, 40]);
    expect(collector.takeRecentLatencies()).toEqual([]);
  });

  it('does not compare balances of another points currency', () => {
    const collector = new OutcomeCollector('r1', 1, 'points');
    collector.handle('loyalty.outcome.balance.m1', encode({ kind: 'balance', eventId: 'er1-0', currency: 'miles', spendable: 9 }), 1);
    expect(collector.spendable[0]).toBeNaN();
    expect(collector.hadBalance(0)).toBe(false);
    expect(collector.counts.balanceOtherCurrency).toBe(1);
    expect(collector.isDone(0)).toBe(true);
  });

  it('reads kinds from subjects and event ids without parsing', () => {
    expect(kindFromSubject('loyalty.outcome.balance.m1')).toBe('balance');
    expect(kindFromSubject('acme.loyalty.outcome.tier.m-2')).toBe('tier');
    expect(eventIdIn('{"kind":"tier","eventId":"er1-5","memberId":"m1"}')).toBe('er1-5');
    expect(eventIdIn('{"kind":"tier"}')).toBeUndefined();
  });
});

function point(tS: number, overrides: Partial<TimelinePoint> = {}): TimelinePoint {
  return {
    tS,
    published: 0,
    publishedPerSecond: 0,
    targetPerSecond: null,
    done: 0,
    donePerSecond: 0,
    latencyMs: null,
    streamPending: 0,
    ackPending: 0,
    metricsPending: null,
    engineCpuPercent: null,
    engineRssBytes: null,
    engineRssAnonBytes: null,
    engineHeapUsedBytes: null,
    actorHeapUsedBytes: null,
    cachedMembers: null,
    natsCpuPercent: null,
    deadLetters: null,
    rejected: 0,
    ...overrides,
  };
}

describe('timeline figures', () => {
  it('puts each event\'s latency in the second it completed', () => {
    const collector = new OutcomeCollector('r1', 4, 'points');
    collector.publishTimesMs.set([1_000, 1_100, 1_200, 1_300]);
    collector.doneTimesMs.set([1_010, 1_500, 2_100, Number.NaN]);
    const timeline = [point(1), point(2)];
    fillTimelineLatencies(timeline, collector, 1_000);
    expect(timeline[0]!.latencyMs).toMatchObject({ count: 2, p50: 10, p99: 400 });
    expect(timeline[1]!.latencyMs).toMatchObject({ count: 1, p50: 900 });
  });

  it('calls the engine saturated when more waits than half a second of its commits', () => {
    expect(isSaturated(point(1, { streamPending: 500, ackPending: 400, donePerSecond: 10_000 }))).toBe(false);
    expect(isSaturated(point(1, { streamPending: 0, ackPending: 20_000, donePerSecond: 5_000 }))).toBe(true);
    expect(isSaturated(point(1, { streamPending: 30_000, ackPending: 30_000, donePerSecond: 200_000 }))).toBe(false);
    expect(isSaturated(point(1, { streamPending: null, ackPending: null, published: 9_000, done: 1_000, donePerSecond: 1_000 }))).toBe(true);
  });

  it('finds the best window of committed events', () => {
    const timeline = [0, 1_000, 3_000, 8_000, 12_000, 13_000].map((done, index) => point(index + 1, { done }));
    // Windows of 2 s: 3,000 − 0, 8,000 − 1,000, 12,000 − 3,000 (the best), 13,000 − 8,000.
    expect(bestWindowRate(timeline, 2)).toBe(4_500);
  });
});

describe('PostgreSQL baseline rules', () => {
  it('earns base points, spends redemptions, counts returns as 0', () => {
    const model = { ...purchasesOnlyModel(), activities: [{ activity: 'review' as const, points: 25, currency: 'points', capCount: 5, weight: 1 }] };
    expect(baselinePoints({ type: 'purchase', amountMinor: 12_399 }, model)).toBe(123);
    expect(baselinePoints({ type: 'redemption', points: 500 }, model)).toBe(-500);
    expect(baselinePoints({ type: 'activity', activity: 'review' }, model)).toBe(25);
    expect(baselinePoints({ type: 'return', orderId: 'o1' }, model)).toBe(0);
  });
});

describe('parsePrometheusText', () => {
  it('sums samples over labels and skips comments', () => {
    const text = [
      '# HELP loyalty_consumer_pending_messages Pending.',
      '# TYPE loyalty_consumer_pending_messages gauge',
      'loyalty_consumer_pending_messages{actor="0"} 10',
      'loyalty_consumer_pending_messages{actor="1",note="a b}"} 5',
      'process_resident_memory_bytes 1.5e8',
      'other_metric 3',
    ].join('\n');
    expect(parsePrometheusText(text)).toEqual({ loyalty_consumer_pending_messages: 15, process_resident_memory_bytes: 1.5e8, other_metric: 3 });
    expect(parsePrometheusText(text, new Set(['other_metric']))).toEqual({ other_metric: 3 });
  });
});

describe('command line numbers', () => {
  it('reads counts with suffixes and mixes', () => {
    expect(parseCount('200000', 'x')).toBe(200_000);
    expect(parseCount('200_000', 'x')).toBe(200_000);
    expect(parseCount('200k', 'x')).toBe(200_000);
    expect(parseCount('1.5m', 'x')).toBe(1_500_000);
    expect(() => parseCount('1.5', 'x')).toThrow(UsageError);
    expect(() => parseCount('lots', 'x')).toThrow(UsageError);
    expect(parseMix('purchase=90, return=5')).toEqual({ purchase: 90, return: 5, redemption: 0, activity: 0 });
    expect(() => parseMix('purchase=1,refund=2')).toThrow(/unknown kind/);
  });
});

describe('stats and progress', () => {
  it('computes medians and guarded ratios, and draws a bar', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(ratio(50, 200)).toBe(0.25);
    expect(ratio(50, 0)).toBeNull();
    expect(ratio(null, 10)).toBeNull();
    expect(bar(0.5, 10)).toBe('[█████░░░░░]');
    expect(bar(2, 4)).toBe('[████]');
    expect(bar(Number.NaN, 2)).toBe('[░░]');
  });
});
