import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkBalances, expectedPoints, readProgramFacts } from '../../../bench/correctness/balances.js';
import { DEFAULT_GENERATOR_OPTIONS } from '../../../bench/generator/events.js';
import { generateLoad } from '../../../bench/generator/load.js';
import { OutcomeCollector } from '../../../bench/measure/outcomes.js';

const dir = mkdtempSync(join(tmpdir(), 'bench-correctness-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function programFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('expectedPoints', () => {
  it('rounds exactly as the program says', () => {
    const rule = { points: 1, perAmountMinor: 100, rounding: 'floor' as const };
    expect(expectedPoints(199, rule)).toBe(1);
    expect(expectedPoints(99, rule)).toBe(0);
    expect(expectedPoints(150, { ...rule, rounding: 'half_up' })).toBe(2);
    expect(expectedPoints(149, { ...rule, rounding: 'half_up' })).toBe(1);
    expect(expectedPoints(101, { ...rule, rounding: 'ceil' })).toBe(2);
    expect(expectedPoints(100, { ...rule, rounding: 'ceil' })).toBe(1);
    expect(expectedPoints(Number.MAX_SAFE_INTEGER, { points: 3, perAmountMinor: 3, rounding: 'floor' })).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('readProgramFacts', () => {
  it('reads the earn rule and the points currency of the current and the first schema', () => {
    const current = readProgramFacts(
      programFile(
        'simple.yaml',
        'id: simple\nname: S\ncurrency: EUR\ncurrencies: [{ id: pts }]\nearn: { points: 2, perAmountMinor: 100, rounding: half_up }\ntiers: [{ id: member, name: M, qualifyingPointsMin: 0 }]\n',
      ),
    );
    expect(current).toMatchObject({ currency: 'EUR', pointsCurrency: 'pts', simple: true, inexactBecause: [] });
    expect(current.earn).toEqual({ points: 2, perAmountMinor: 100, rounding: 'half_up' });
    const first = readProgramFacts(
      programFile('retail.yaml', 'id: r\nname: R\ncurrency: EUR\npointsCurrency: points\nearn: { points: 1, perAmountMinor: 100, rounding: floor }\ntiers: []\n'),
    );
    expect(first).toMatchObject({ pointsCurrency: 'points', simple: false });
  });

  it('names the features that make the recomputation inexact', () => {
    const facts = readProgramFacts(
      programFile(
        'rich.yaml',
        [
          'id: rich',
          'name: R',
          'currency: EUR',
          'earn: { points: 1, perAmountMinor: 100, rounding: floor, pendingDays: 14, rules: [{ id: x, award: { kind: multiplier, percent: 200 } }] }',
          'tiers: [{ id: member, name: M, qualifyingPointsMin: 0 }, { id: gold, name: G, qualifyingPointsMin: 10, earnMultiplierPercent: 150 }]',
          'promotions: [{ id: p }]',
          '',
        ].join('\n'),
      ),
    );
    expect(facts.inexactBecause).toEqual(['earn.rules', 'earn.pendingDays > 0', 'promotions', 'tier earnMultiplierPercent']);
  });
});

describe('checkBalances', () => {
  const rule = { points: 1, perAmountMinor: 100, rounding: 'floor' as const };
  const load = generateLoad({ generator: { ...DEFAULT_GENERATOR_OPTIONS, runId: 'c1', members: 50 }, count: 2_000, encoding: 'json' });

  /** Outcomes as a correct engine would publish them: running sums per member; 0-point events may have none. */
  function honestOutcomes(skipZeroPoint: boolean): OutcomeCollector {
    const collector = new OutcomeCollector('c1', load.count, 'points');
    const running = new Map<number, number>();
    for (let index = 0; index < load.count; index++) {
      const rank = load.memberRanks[index]!;
      const points = expectedPoints(load.amountsMinor[index]!, rule);
      running.set(rank, (running.get(rank) ?? 0) + points);
      if (skipZeroPoint && points === 0) continue;
      const payload = { kind: 'balance', eventId: `ec1-${index}`, currency: 'points', delta: points, spendable: running.get(rank) };
      collector.handle(`loyalty.outcome.balance.m${rank}`, Buffer.from(JSON.stringify(payload)), index);
    }
    return collector;
  }

  it('passes a correct engine, with or without outcomes for 0-point events', () => {
    for (const skip of [false, true]) {
      const result = checkBalances(load, rule, honestOutcomes(skip), 'test');
      expect(result.passed).toBe(true);
      expect(result.membersChecked).toBe(load.distinctMembers);
    }
  });

  it('catches a wrong balance and a missing outcome', () => {
    const collector = honestOutcomes(false);
    collector.balances[10] = collector.balances[10]! + 1;
    let missing = 20;
    while (expectedPoints(load.amountsMinor[missing]!, rule) === 0) missing += 1;
    collector.balances[missing] = Number.NaN;
    const result = checkBalances(load, rule, collector, 'test');
    expect(result.passed).toBe(false);
    expect(result.eventBalanceMismatches).toBe(1);
    expect(result.eventsWithoutBalance).toBe(1);
    expect(result.samples.map((sample) => sample.eventIndex).sort((a, b) => a - b)).toEqual([10, missing]);
  });

  it('catches a wrong final balance', () => {
    const collector = honestOutcomes(false);
    const lastIndex = load.count - 1;
    collector.balances[lastIndex] = collector.balances[lastIndex]! - 1;
    const result = checkBalances(load, rule, collector, 'test');
    expect(result.memberFinalMismatches).toBe(1);
  });
});
