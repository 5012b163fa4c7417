import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import { describe, expect, it } from 'vitest';
import { parseCli, THOUSAND_TIMES_PEAK_PER_SECOND, UsageError } from '../../../bench/cli/args.js';
import { DEFAULT_GENERATOR_OPTIONS } from '../../../bench/generator/events.js';
import { purchasesOnlyModel } from '../../../bench/generator/program-model.js';
import { writeSpool } from '../../../bench/generator/spool.js';
import { publishSpool } from '../../../bench/publisher/publisher.js';
import { CYBER_DAY_PROFILE, cyberDayShape, PiecewiseLinearShape, rampShape, scheduledSecondOf, steadyShape, type RateShape } from '../../../bench/scenarios/shapes.js';

/** The integral of the rate by small steps (midpoint rule), to check the exact one. */
function numericIntegral(shape: RateShape, until: number, steps = 20_000): number {
  const width = until / steps;
  let sum = 0;
  for (let step = 0; step < steps; step++) sum += shape.rateAt((step + 0.5) * width) * width;
  return sum;
}

describe('traffic shapes', () => {
  it('steady: the same rate all along, rate × duration events', () => {
    const shape = steadyShape(5_000, 60);
    expect(shape.totalEvents).toBe(300_000);
    expect(shape.rateAt(0)).toBe(5_000);
    expect(shape.rateAt(59.9)).toBe(5_000);
    expect(shape.rateAt(61)).toBe(0);
    expect(shape.cumulativeAt(30)).toBeCloseTo(150_000, 6);
    expect(shape.peakRatePerSecond).toBe(5_000);
  });

  it('ramp: from 10 % of the peak to the peak over 75 % of the time, then held', () => {
    const shape = rampShape(40_000, 100);
    expect(shape.rateAt(0)).toBe(4_000);
    expect(shape.rateAt(37.5)).toBeCloseTo(22_000, 6);
    expect(shape.rateAt(75)).toBe(40_000);
    expect(shape.rateAt(99)).toBe(40_000);
    expect(shape.totalEvents).toBe(Math.round(((4_000 + 40_000) / 2) * 75 + 40_000 * 25));
  });

  it('cyber-week day: quiet night, evening spike at the peak, several times the mean', () => {
    const shape = cyberDayShape(THOUSAND_TIMES_PEAK_PER_SECOND, 96);
    const hour = (h: number): number => shape.rateAt((h / 24) * 96);
    expect(THOUSAND_TIMES_PEAK_PER_SECOND).toBe(57_500);
    expect(shape.peakRatePerSecond).toBe(57_500);
    expect(hour(20.5)).toBe(57_500);
    expect(hour(4)).toBeLessThan(hour(10));
    expect(hour(10)).toBeLessThan(hour(20.5));
    expect(hour(3)).toBeLessThan(0.1 * 57_500);
    const ratio = shape.peakRatePerSecond / shape.meanRatePerSecond;
    expect(ratio).toBeGreaterThan(3);
    expect(ratio).toBeLessThan(4);
    expect(CYBER_DAY_PROFILE[0]![0]).toBe(0);
    expect(CYBER_DAY_PROFILE[CYBER_DAY_PROFILE.length - 1]![0]).toBe(24);
  });

  it('counts due events exactly: the cumulative is the integral of the rate and never falls', () => {
    for (const shape of [steadyShape(1_234, 17), rampShape(50_000, 60), cyberDayShape(57_500, 90)]) {
      let previous = 0;
      for (let t = 0; t <= shape.durationSeconds; t += shape.durationSeconds / 97) {
        const due = shape.cumulativeAt(t);
        expect(due).toBeGreaterThanOrEqual(previous);
        previous = due;
      }
      for (const fraction of [0.13, 0.5, 0.87, 1]) {
        const t = shape.durationSeconds * fraction;
        expect(shape.cumulativeAt(t) / numericIntegral(shape, t)).toBeCloseTo(1, 5);
      }
      expect(shape.totalEvents).toBe(Math.round(shape.cumulativeAt(shape.durationSeconds)));
      expect(shape.cumulativeAt(shape.durationSeconds + 10)).toBe(shape.cumulativeAt(shape.durationSeconds));
    }
  });

  it('tells when each event is due', () => {
    const steady = steadyShape(1_000, 2);
    expect(scheduledSecondOf(steady, 0)).toBeCloseTo(0.001, 9);
    expect(scheduledSecondOf(steady, 999)).toBeCloseTo(1, 9);
    expect(scheduledSecondOf(steady, 1_999)).toBeCloseTo(2, 9);
    const day = cyberDayShape(57_500, 60);
    for (const index of [0, 1_000, 500_000, day.totalEvents - 2]) {
      const t = scheduledSecondOf(day, index);
      expect(day.cumulativeAt(t)).toBeGreaterThanOrEqual(index + 1 - 1e-6);
      expect(day.cumulativeAt(t - 1e-6)).toBeLessThan(index + 1);
    }
    expect(scheduledSecondOf(day, day.totalEvents - 1)).toBeLessThanOrEqual(60);
  });

  it('refuses shapes that make no sense', () => {
    expect(() => steadyShape(0, 10)).toThrow();
    expect(() => rampShape(100, -1)).toThrow();
    expect(
      () =>
        new PiecewiseLinearShape(
          'bad',
          [
            [0, 1],
            [0, 2],
          ],
          () => '',
        ),
    ).toThrow(/increase/);
  });
});

describe('command line', () => {
  it('runs the Cyber Week day at 1,000 × the published peak by default', () => {
    const { parameters, shape } = parseCli([], 'r1');
    expect(parameters.scenario).toBe('cyber-week');
    expect(parameters.ratePerSecond).toBe(57_500);
    expect(parameters.durationSeconds).toBe(60);
    expect(parameters.events).toBe(shape!.totalEvents);
    expect(parameters.encoding).toBe('msgpack');
    expect(parameters.programFile).toBe('config/programs/retail.yaml');
    expect(parameters.mix).toEqual({ purchase: 90, return: 5, redemption: 3, activity: 2 });
  });

  it('reads each scenario\'s own options and refuses the others', () => {
    expect(parseCli(['--scenario', 'steady', '--rate', '50k', '--duration-s', '30'], 'r1').parameters.events).toBe(1_500_000);
    expect(parseCli(['--scenario', 'max', '--events', '1m'], 'r1').shape).toBeNull();
    expect(() => parseCli(['--scenario', 'max', '--rate', '5000'], 'r1')).toThrow(UsageError);
    expect(() => parseCli(['--events', '5000'], 'r1')).toThrow(/applies to max/);
    expect(() => parseCli(['--mix', 'return=5'], 'r1')).toThrow(/purchases/);
    expect(parseCli(['--mix', 'purchase=1'], 'r1').parameters.mix).toEqual({ purchase: 1, return: 0, redemption: 0, activity: 0 });
    expect(parseCli(['--engine-env', 'LOYALTY_ACTORS=2'], 'r1').parameters.engineEnv).toEqual({ LOYALTY_ACTORS: '2' });
    expect(() => parseCli(['--engine-env', 'ACTORS=2'], 'r1')).toThrow(/LOYALTY_/);
  });
});

describe('publisher on a schedule', () => {
  it('publishes every event in order, no sooner than the schedule, and all of them by its end', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-publisher-test-'));
    try {
      const spool = writeSpool({
        generator: { ...DEFAULT_GENERATOR_OPTIONS, runId: 'p1', members: 100, count: 1_501, mix: { purchase: 1 }, program: purchasesOnlyModel() },
        encoding: 'json',
        dir,
        chunkEvents: 400,
      });
      const subjects: string[] = [];
      const fake = { publish: (subject: string) => void subjects.push(subject), flush: () => Promise.resolve() } as unknown as NatsConnection;
      const publishTimesMs = new Float64Array(spool.count);
      // 1,500.5 events scheduled over 0.5 s: the last one is due only when the schedule ends.
      const shape = steadyShape(3_001, 0.5);
      const result = await publishSpool({ nc: fake, spool, shape, publishTimesMs, flushEvery: 100 });
      expect(result.published).toBe(1_501);
      expect(subjects).toHaveLength(1_501);
      const firstChunk = spool.readChunk(0);
      expect(subjects[0]).toBe(spool.subjectOfRank(firstChunk.memberRanks[0]!));
      for (let index = 0; index < spool.count; index++) {
        const dueAtMs = result.startedAtMs + (index / 3_001) * 1000;
        // Never before its time on the schedule (1 ms for timer rounding).
        expect(publishTimesMs[index]!).toBeGreaterThanOrEqual(dueAtMs - 1);
      }
      expect(result.durationMs).toBeGreaterThanOrEqual(480);
      expect(result.durationMs).toBeLessThan(3_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
