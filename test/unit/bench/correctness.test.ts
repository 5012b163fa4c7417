import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unpack } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';
import { compareWallet, replayAndCompare } from '../../../bench/correctness/replay.js';
import { DEFAULT_GENERATOR_OPTIONS } from '../../../bench/generator/events.js';
import { programModelOf } from '../../../bench/generator/program-model.js';
import { payloadOf, writeSpool, type Spool } from '../../../bench/generator/spool.js';
import { OutcomeCollector } from '../../../bench/measure/outcomes.js';
import { loadProgramFile } from '../../../src/config/program-file.js';
import {
  applyEvent,
  compileProgram,
  createMemoryBudgets,
  globalBudgetLimits,
  unlimitedBudgets,
  validateEvent,
  type BudgetPort,
  type MemberState,
  type Outcome,
} from '../../../src/domain/index.js';

const dir = mkdtempSync(join(tmpdir(), 'bench-correctness-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Retail with a Cyber Week budget small enough to run out within the test's events.
const retailText = readFileSync(join(import.meta.dirname, '../../../config/programs/retail.yaml'), 'utf8');
const programFile = join(dir, 'retail-small-budget.yaml');
writeFileSync(programFile, retailText.replace('global: { points: 50000000 }', 'global: { points: 40000 }'));
const program = loadProgramFile(programFile);
const compiled = compileProgram(program);

const spool: Spool = writeSpool({
  generator: { ...DEFAULT_GENERATOR_OPTIONS, runId: 'c1', members: 400, count: 4_000, program: programModelOf(program) },
  encoding: 'msgpack',
  dir,
  chunkEvents: 1_000,
});

interface Published {
  index: number;
  outcomes: Outcome[];
}

/**
 * A stand-in for the engine: the domain applied per member in stream order,
 * but members interleaved differently from the publish order (even ranks
 * first), so a shared budget runs out on other purchases than in a replay in
 * publish order.
 */
function simulateEngine(budgets: BudgetPort): Published[] {
  const events: { index: number; rank: number; value: unknown }[] = [];
  for (let chunk = 0; chunk < spool.chunks.length; chunk++) {
    const read = spool.readChunk(chunk);
    for (let position = 0; position < read.count; position++) {
      events.push({ index: read.start + position, rank: read.memberRanks[position]!, value: unpack(payloadOf(read, position)) });
    }
  }
  const order = [...events.filter((event) => event.rank % 2 === 0), ...events.filter((event) => event.rank % 2 === 1)];
  const states = new Map<number, MemberState | undefined>();
  const published: Published[] = [];
  for (const { index, rank, value } of order) {
    const validation = validateEvent(value);
    if (!validation.ok) throw new Error(validation.reason);
    const decision = applyEvent(states.get(rank), validation.event, validation.occurredAtMs, compiled, { budgets });
    states.set(rank, decision.state ?? states.get(rank));
    published.push({ index, outcomes: [...decision.outcomes] });
  }
  return published;
}

function collect(published: readonly Published[]): OutcomeCollector {
  const collector = new OutcomeCollector('c1', spool.count, 'points');
  for (const { outcomes } of published) {
    for (const outcome of outcomes) collector.handle(`loyalty.outcome.${outcome.kind}.${outcome.memberId}`, Buffer.from(JSON.stringify(outcome)), 1);
  }
  return collector;
}

const replay = (collector: OutcomeCollector) => replayAndCompare({ spool, programFile, collector, dataDir: null, runComplete: true, membersPerPass: 150 });

describe('correctness replay', () => {
  it('passes a correct engine, following its grants where the shared budget ran out', async () => {
    const engine = simulateEngine(createMemoryBudgets(globalBudgetLimits(program)));
    const result = await replay(collect(engine));
    expect(result.samples).toEqual([]);
    expect(result.passed).toBe(true);
    expect(result.passes).toBeGreaterThan(1);
    expect(result.eventsChecked).toBe(4_000);
    const cyberWeek = result.budgets.find((budget) => budget.promotionId === 'cyber-week')!;
    // The budget was spent: some purchases got nothing (or the last points), and the grants add up to it exactly.
    expect(cyberWeek.refused).toBeGreaterThan(0);
    expect(cyberWeek.grantedPoints).toBe(40_000);
  });

  it('catches a wrong balance and a missing outcome', async () => {
    const engine = simulateEngine(createMemoryBudgets(globalBudgetLimits(program)));
    const withBalance = engine.filter((event) => event.outcomes.some((outcome) => outcome.kind === 'balance'));
    const wrong = withBalance[10]!;
    wrong.outcomes = wrong.outcomes.map((outcome) => (outcome.kind === 'balance' ? { ...outcome, spendable: outcome.spendable + 1 } : outcome));
    const dropped = withBalance[20]!;
    dropped.outcomes = [];
    const result = await replay(collect(engine));
    expect(result.passed).toBe(false);
    expect(result.outcomeMismatches).toBeGreaterThanOrEqual(1);
    expect(result.missingOutcomes).toBe(1);
    expect(result.samples.map((sample) => sample.eventIndex)).toEqual(expect.arrayContaining([wrong.index, dropped.index]));
  });

  it('catches an engine that overspends a global budget', async () => {
    const result = await replay(collect(simulateEngine(unlimitedBudgets)));
    expect(result.outcomeMismatches).toBe(0);
    expect(result.passed).toBe(false);
    const cyberWeek = result.budgets.find((budget) => budget.promotionId === 'cyber-week')!;
    expect(cyberWeek.grantedPoints).toBeGreaterThan(40_000);
    expect(cyberWeek.problems.join(' ')).toMatch(/over the budget/);
  });

  it('catches a wrong rejection', async () => {
    const engine = simulateEngine(createMemoryBudgets(globalBudgetLimits(program)));
    const purchase = engine.find((event) => event.outcomes.length > 0 && event.outcomes.every((outcome) => outcome.kind !== 'rejected'))!;
    const member = purchase.outcomes[0]!;
    purchase.outcomes = [{ kind: 'rejected', eventId: member.eventId, memberId: member.memberId, occurredAtMs: member.occurredAtMs, code: 'DUPLICATE_ORDER', reason: 'x' }];
    const result = await replay(collect(engine));
    expect(result.passed).toBe(false);
    expect(result.samples.some((sample) => sample.eventIndex === purchase.index && sample.what === 'rejection')).toBe(true);
  });
});

describe('wallet comparison', () => {
  it('compares status, tier, counts and every balance', () => {
    const event = validateEvent({ type: 'purchase', id: 'p1', memberId: 'm1', occurredAt: '2026-11-24T10:00:00Z', amountMinor: 12_345, currency: 'EUR' });
    if (!event.ok) throw new Error(event.reason);
    const state = applyEvent(undefined, event.event, event.occurredAtMs, compiled, { budgets: unlimitedBudgets }).state!;
    expect(compareWallet(state, structuredClone(state))).toBeNull();
    const points = state.currencies.points!;
    const changed = { ...state, currencies: { ...state.currencies, points: { ...points, pending: points.pending + 1 } } };
    expect(compareWallet(state, changed)).toEqual({ what: 'points.pending', expected: String(points.pending), engine: String(points.pending + 1) });
    expect(compareWallet(state, undefined)).toMatchObject({ what: 'member', engine: 'absent' });
    expect(compareWallet(undefined, undefined)).toBeNull();
  });
});
