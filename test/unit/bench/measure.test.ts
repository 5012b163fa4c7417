import { describe, expect, it } from 'vitest';
import { parseCount, parseRate, UsageError } from '../../../bench/cli/args.js';
import { parsePrometheusText } from '../../../bench/measure/metrics-scraper.js';
import { OutcomeCollector } from '../../../bench/measure/outcomes.js';
import { median, ratio } from '../../../bench/measure/stats.js';
import { TokenBucket } from '../../../bench/publisher/pacing.js';

const encode = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value));

describe('TokenBucket', () => {
  it('allows rate × elapsed events, capped at the burst', () => {
    const bucket = new TokenBucket(10_000, 0, 20);
    expect(bucket.available(0)).toBe(1);
    bucket.take(1);
    expect(bucket.available(1)).toBe(10);
    bucket.take(10);
    // A long stall does not turn into more than 20 ms of events.
    expect(bucket.available(1_000)).toBe(200);
    bucket.take(200);
    expect(bucket.msUntilNextToken()).toBeCloseTo(0.1, 6);
  });

  it('holds the average rate over many uneven ticks', () => {
    const bucket = new TokenBucket(5_000, 0);
    let sent = 0;
    let now = 0;
    for (let tick = 0; tick < 1_000; tick++) {
      now += tick % 3 === 0 ? 4 : 1; // timers that fire late now and then
      const allowed = bucket.available(now);
      bucket.take(allowed);
      sent += allowed;
    }
    // Within the one starting token and the fraction still in the bucket.
    expect(Math.abs(sent - (now / 1000) * 5_000)).toBeLessThanOrEqual(2);
  });

  it('refuses a rate that is not positive', () => {
    expect(() => new TokenBucket(0, 0)).toThrow(RangeError);
  });
});

describe('OutcomeCollector', () => {
  it('times the first outcome of each event and keeps its spendable balance', () => {
    const collector = new OutcomeCollector('r1', 3, 'points');
    collector.publishTimesMs.set([100, 110, 120]);
    collector.handle('loyalty.outcome.balance.m1', encode({ kind: 'balance', eventId: 'er1-1', currency: 'points', delta: 5, spendable: 50 }), 130);
    collector.handle('loyalty.outcome.tier.m1', encode({ kind: 'tier', eventId: 'er1-1' }), 131);
    collector.handle('loyalty.outcome.balance.m1', encode({ kind: 'balance', eventId: 'er1-1', currency: 'points', spendable: 50 }), 140);
    collector.handle('loyalty.outcome.balance.m2', encode({ kind: 'balance', eventId: 'er1-0', currency: 'points', balance: 7 }), 150);
    collector.handle('loyalty.outcome.rejected.m3', encode({ kind: 'rejected', eventId: 'er1-2', code: 'X', reason: 'why' }), 160);
    collector.handle('loyalty.outcome.balance.m4', encode({ kind: 'balance', eventId: 'eother-0' }), 170);
    collector.handle('loyalty.outcome.balance.m4', Buffer.from('not json'), 170);
    expect(collector.counts.eventsDone).toBe(3);
    expect(collector.counts.duplicateOutcomes).toBe(1);
    expect(collector.counts.foreign).toBe(1);
    expect(collector.counts.unparsable).toBe(1);
    expect(collector.counts.byKind).toEqual({ balance: 4, tier: 1, rejected: 1 });
    expect(Array.from(collector.latenciesMs())).toEqual([50, 20, 40]);
    expect(collector.balances[1]).toBe(50);
    expect(collector.balances[0]).toBe(7);
    expect(collector.wasRejected(2)).toBe(true);
    expect(collector.rejectionCodes).toEqual({ X: 1 });
    expect(collector.doneTimeAtFraction(0.5)).toBe(150);
  });

  it('does not compare balances of another points currency', () => {
    const collector = new OutcomeCollector('r1', 1, 'points');
    collector.handle('loyalty.outcome.balance.m1', encode({ kind: 'balance', eventId: 'er1-0', currency: 'miles', spendable: 9 }), 1);
    expect(collector.balances[0]).toBeNaN();
    expect(collector.counts.balanceOtherCurrency).toBe(1);
    expect(collector.isDone(0)).toBe(true);
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
  it('reads counts with suffixes and rates', () => {
    expect(parseCount('200000', 'x')).toBe(200_000);
    expect(parseCount('200_000', 'x')).toBe(200_000);
    expect(parseCount('200k', 'x')).toBe(200_000);
    expect(parseCount('1.5m', 'x')).toBe(1_500_000);
    expect(() => parseCount('1.5', 'x')).toThrow(UsageError);
    expect(() => parseCount('lots', 'x')).toThrow(UsageError);
    expect(parseRate('unlimited')).toBeNull();
    expect(parseRate('50k')).toBe(50_000);
  });
});

describe('stats', () => {
  it('computes medians and guarded ratios', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(ratio(50, 200)).toBe(0.25);
    expect(ratio(50, 0)).toBeNull();
    expect(ratio(null, 10)).toBeNull();
  });
});
