import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { EVENT_KINDS } from '../generator/events.js';
import type { GeneratedLoad } from '../generator/load.js';
import type { OutcomeCollector } from '../measure/outcomes.js';

/**
 * An independent check of what the engine committed: the expected spendable
 * balance after every event is recomputed here from the generated events and
 * the program's base earn rate, without importing the engine's domain code,
 * and compared with the `balance` outcomes the engine published.
 *
 * It is only exact when the program has nothing but the base earn rule
 * (config/programs/simple.yaml); with promotions, tiers that multiply points,
 * caps, etc. the expectation would need the domain itself.
 */

export type Rounding = 'floor' | 'half_up' | 'ceil';

export interface EarnRule {
  points: number;
  perAmountMinor: number;
  rounding: Rounding;
}

export interface ProgramFacts {
  path: string;
  id: string;
  /** The currency purchases must be in. */
  currency: string;
  /** The points currency base earn credits (earn.currency, else the first of currencies). */
  pointsCurrency: string;
  earn: EarnRule;
  /** True when the file is the simple program, the one the check is meant for. */
  simple: boolean;
  /**
   * Features present in the program that make "Σ base earn" differ from the
   * real balance (earn rules, promotions, tier multipliers, pending days).
   * Empty: the recomputation is exact.
   */
  inexactBecause: string[];
}

export const SIMPLE_PROGRAM_BASENAME = 'simple.yaml';

type Raw = Record<string, unknown>;

const asRecord = (value: unknown): Raw | undefined =>
  value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Raw) : undefined;
const nonEmptyArray = (value: unknown): boolean => Array.isArray(value) && value.length > 0;

/**
 * Reads what the bench needs from a program file with yaml, independently of
 * src/config (whose schema is still moving): the earn rate, the currencies,
 * and whether anything beyond base earn can change a purchase's points.
 */
export function readProgramFacts(path: string): ProgramFacts {
  const raw = asRecord(parseYaml(readFileSync(path, 'utf8')));
  if (raw === undefined) throw new Error(`${path}: not a program (no mapping at the top)`);
  const earn = asRecord(raw.earn);
  const points = earn?.points;
  const perAmountMinor = earn?.perAmountMinor;
  const rounding = earn?.rounding;
  if (typeof points !== 'number' || !Number.isSafeInteger(points) || points < 0) throw new Error(`${path}: earn.points must be an integer >= 0`);
  if (typeof perAmountMinor !== 'number' || !Number.isSafeInteger(perAmountMinor) || perAmountMinor < 1) {
    throw new Error(`${path}: earn.perAmountMinor must be an integer >= 1`);
  }
  if (rounding !== 'floor' && rounding !== 'half_up' && rounding !== 'ceil') throw new Error(`${path}: earn.rounding must be floor, half_up or ceil`);
  const currencies = Array.isArray(raw.currencies) ? raw.currencies.map(asRecord) : [];
  const firstCurrencyId = currencies[0]?.id;
  const pointsCurrency =
    typeof earn?.currency === 'string'
      ? earn.currency
      : typeof firstCurrencyId === 'string'
        ? firstCurrencyId
        : typeof raw.pointsCurrency === 'string'
          ? raw.pointsCurrency
          : 'points';
  const inexactBecause: string[] = [];
  if (nonEmptyArray(earn?.rules)) inexactBecause.push('earn.rules');
  if (typeof earn?.pendingDays === 'number' && earn.pendingDays > 0) inexactBecause.push('earn.pendingDays > 0');
  if (nonEmptyArray(raw.promotions)) inexactBecause.push('promotions');
  const tiers = Array.isArray(raw.tiers) ? raw.tiers.map(asRecord) : [];
  if (tiers.some((tier) => tier?.earnMultiplierPercent !== undefined && tier.earnMultiplierPercent !== 100)) {
    inexactBecause.push('tier earnMultiplierPercent');
  }
  return {
    path,
    id: String(raw.id ?? '?'),
    currency: typeof raw.currency === 'string' ? raw.currency : 'EUR',
    pointsCurrency,
    earn: { points, perAmountMinor, rounding },
    simple: basename(path) === SIMPLE_PROGRAM_BASENAME,
    inexactBecause,
  };
}

/** points = amountMinor × points / perAmountMinor, rounded as the rule says, in exact integer arithmetic (BigInt). */
export function expectedPoints(amountMinor: number, rule: EarnRule): number {
  if (!Number.isSafeInteger(amountMinor) || amountMinor < 0) throw new RangeError(`amountMinor must be a safe integer >= 0, got ${amountMinor}`);
  const numerator = BigInt(amountMinor) * BigInt(rule.points);
  const denominator = BigInt(rule.perAmountMinor);
  const quotient = numerator / denominator;
  const remainder = numerator % denominator;
  switch (rule.rounding) {
    case 'floor':
      return Number(quotient);
    case 'ceil':
      return Number(remainder > 0n ? quotient + 1n : quotient);
    case 'half_up':
      return Number(remainder * 2n >= denominator ? quotient + 1n : quotient);
  }
}

export interface BalanceMismatch {
  eventIndex: number;
  memberRank: number;
  expected: number;
  /** NaN when the engine published no balance outcome for the event. */
  reported: number;
}

export interface CorrectnessResult {
  checked: boolean;
  /** Why the check ran or did not. */
  note: string;
  passed: boolean;
  eventsChecked: number;
  /** Events that earn points but have no balance outcome (rejected, or no outcome at all). */
  eventsWithoutBalance: number;
  /** Events that earn 0 points: a balance outcome is optional for them (nothing moved). */
  zeroPointEvents: number;
  /** Events whose reported balance differs from the recomputed one. */
  eventBalanceMismatches: number;
  membersChecked: number;
  /** Members whose balance after their last event differs (or is missing). */
  memberFinalMismatches: number;
  expectedPointsTotal: number;
  samples: BalanceMismatch[];
}

export function skippedCorrectness(note: string): CorrectnessResult {
  return {
    checked: false,
    note,
    passed: true,
    eventsChecked: 0,
    eventsWithoutBalance: 0,
    zeroPointEvents: 0,
    eventBalanceMismatches: 0,
    membersChecked: 0,
    memberFinalMismatches: 0,
    expectedPointsTotal: 0,
    samples: [],
  };
}

/**
 * Events of one member reach the engine in index order (one publisher, one
 * stream, per-subject order kept), so the expected balance after event i is
 * the running sum of that member's points up to i.
 */
export function checkBalances(load: GeneratedLoad, rule: EarnRule, outcomes: OutcomeCollector, note: string): CorrectnessResult {
  const purchaseKind = EVENT_KINDS.indexOf('purchase');
  const running = new Float64Array(load.options.members);
  const lastIndexOfRank = new Int32Array(load.options.members).fill(-1);
  const expectedAfter = new Float64Array(load.count);
  const earnsNothing = new Uint8Array(load.count);
  let expectedPointsTotal = 0;
  let zeroPointEvents = 0;
  for (let index = 0; index < load.count; index++) {
    if (load.kinds[index] !== purchaseKind) throw new Error('the balance check only knows purchases so far');
    const rank = load.memberRanks[index]!;
    const points = expectedPoints(load.amountsMinor[index]!, rule);
    expectedPointsTotal += points;
    if (points === 0) {
      earnsNothing[index] = 1;
      zeroPointEvents += 1;
    }
    running[rank] = running[rank]! + points;
    expectedAfter[index] = running[rank]!;
    lastIndexOfRank[rank] = index;
  }
  const samples: BalanceMismatch[] = [];
  const recordSample = (mismatch: BalanceMismatch): void => {
    if (samples.length < 20) samples.push(mismatch);
  };
  let eventsWithoutBalance = 0;
  let eventBalanceMismatches = 0;
  for (let index = 0; index < load.count; index++) {
    const reported = outcomes.balances[index]!;
    if (Number.isNaN(reported)) {
      if (earnsNothing[index] === 1) continue;
      eventsWithoutBalance += 1;
      recordSample({ eventIndex: index, memberRank: load.memberRanks[index]!, expected: expectedAfter[index]!, reported });
    } else if (reported !== expectedAfter[index]) {
      eventBalanceMismatches += 1;
      recordSample({ eventIndex: index, memberRank: load.memberRanks[index]!, expected: expectedAfter[index]!, reported });
    }
  }
  // The member's last reported balance (a 0-point last event may have none), in one pass.
  const lastReported = new Float64Array(load.options.members).fill(Number.NaN);
  for (let index = 0; index < load.count; index++) {
    const reported = outcomes.balances[index]!;
    if (!Number.isNaN(reported)) lastReported[load.memberRanks[index]!] = reported;
  }
  let membersChecked = 0;
  let memberFinalMismatches = 0;
  for (let rank = 0; rank < load.options.members; rank++) {
    if (lastIndexOfRank[rank]! < 0) continue;
    membersChecked += 1;
    const reported = lastReported[rank]!;
    // No balance outcome at all is right only for a member whose events all earned nothing.
    if ((Number.isNaN(reported) ? 0 : reported) !== running[rank]) memberFinalMismatches += 1;
  }
  return {
    checked: true,
    note,
    passed: eventsWithoutBalance === 0 && eventBalanceMismatches === 0 && memberFinalMismatches === 0,
    eventsChecked: load.count,
    eventsWithoutBalance,
    zeroPointEvents,
    eventBalanceMismatches,
    membersChecked,
    memberFinalMismatches,
    expectedPointsTotal,
    samples,
  };
}
