import { assert } from './assert.js';
import { activityKey, type ActivityRule, type Award, type Benefit, type Challenge, type Expiry, type Program, type Reward, type Scope } from './program.js';
import type { Rounding } from './money.js';
import { DAY_MS } from './time.js';

/**
 * A program with its lookups precomputed once, so applying an event never
 * re-scans every rule: line rules are indexed by SKU and category, activities
 * by type, benefits by trigger. applyEvent and sweepMember accept a Program
 * and compile it once per program object (a WeakMap cache), or an already
 * compiled program.
 */

export interface CompiledScope {
  readonly skus: ReadonlySet<string> | null;
  readonly categories: ReadonlySet<string> | null;
  readonly channels: ReadonlySet<string> | null;
  readonly partners: ReadonlySet<string> | null;
  readonly minBasketMinor: number;
  /** True when skus or categories select lines; false: the rule applies to the whole order. */
  readonly selectsLines: boolean;
}

/** What a ledger entry and an order record name of the rule that earned points. */
export interface RuleRef {
  readonly id: string;
  readonly promotionId: string | null;
  readonly currency: string;
  readonly qualifying: boolean;
}

/** An earn rule or a promotion: what to award, on what, in which currency. */
export interface CompiledRule extends RuleRef {
  readonly id: string;
  readonly promotionId: string | null;
  readonly scope: CompiledScope;
  readonly award: Award;
  readonly currency: string;
  readonly qualifying: boolean;
}

export interface CompiledPromotion extends CompiledRule {
  readonly promotionId: string;
  readonly startsAtMs: number;
  readonly endsAtMs: number;
  readonly tiers: ReadonlySet<string> | null;
  readonly segments: ReadonlySet<string> | null;
  readonly attributes: Readonly<Record<string, string>> | null;
  readonly perMember: { readonly points?: number; readonly uses?: number } | null;
  readonly global: { readonly points?: number; readonly uses?: number } | null;
}

export interface CompiledCurrency {
  readonly id: string;
  readonly qualifying: boolean;
  readonly expiry: Expiry;
  readonly expiringSoonMs: number | null;
}

export interface CompiledTier {
  readonly id: string;
  readonly name: string;
  readonly index: number;
  readonly threshold: number;
  readonly earnMultiplierPercent: number;
  /** The built-in rule of this tier's earn multiplier (`earn:tier:<id>`). */
  readonly earnRule: RuleRef;
}

export interface CompiledProgram {
  readonly compiled: true;
  readonly program: Program;
  readonly offsetMinutes: number;
  readonly currencies: readonly CompiledCurrency[];
  readonly currencyById: ReadonlyMap<string, CompiledCurrency>;
  /** Whether any currency expires by inactivity (otherwise nothing checks inactivity deadlines). */
  readonly hasInactivityExpiry: boolean;
  readonly earn: {
    readonly currency: string;
    readonly points: number;
    readonly perAmountMinor: number;
    readonly rounding: Rounding;
    readonly pendingMs: number;
  };
  /** The built-in base earn rule (`earn:base`). */
  readonly baseRule: RuleRef;
  /** Rules without a line selector, in program order. */
  readonly orderRules: readonly CompiledRule[];
  /** Rules that select lines, in program order, and their index by SKU and category. */
  readonly lineRules: readonly CompiledRule[];
  readonly lineRulesBySku: ReadonlyMap<string, readonly number[]>;
  readonly lineRulesByCategory: ReadonlyMap<string, readonly number[]>;
  readonly promotions: readonly CompiledPromotion[];
  /** Promotions by id (the first one when ids repeat, as a search in program order finds). */
  readonly promotionById: ReadonlyMap<string, CompiledPromotion>;
  readonly tiers: readonly CompiledTier[];
  readonly tierById: ReadonlyMap<string, CompiledTier>;
  readonly tierBasis: 'points' | 'spend';
  readonly tierCurrency: string;
  readonly tierWindow: { readonly kind: 'lifetime' } | { readonly kind: 'calendar_year' } | { readonly kind: 'rolling_months'; readonly months: number };
  readonly tierDowngrade: 'one_step' | 'to_supported';
  readonly tierGraceMs: number;
  readonly returns: { readonly windowDays: number; readonly shortfall: 'negative' | 'floor' | 'debt'; readonly ordersMax: number } | null;
  readonly shortfall: 'negative' | 'floor' | 'debt';
  readonly redemptionCancelMs: number;
  readonly rewards: ReadonlyMap<string, Reward> | null;
  readonly activitiesByKey: ReadonlyMap<string, ActivityRule>;
  readonly challenges: readonly Challenge[];
  readonly benefitsByTier: ReadonlyMap<string, readonly Benefit[]>;
  readonly benefitsByChallenge: ReadonlyMap<string, readonly Benefit[]>;
  readonly milestoneBenefits: readonly Benefit[];
  readonly autoEnroll: boolean;
  readonly unenrollPolicy: 'forfeit' | 'keep';
  /** Bounds for state lists that are not bounded by time alone. */
  readonly vouchersMax: number;
  readonly redemptionsMax: number;
}

export const BUILTIN_RULE = {
  base: 'earn:base',
  tier: 'earn:tier',
  returns: 'returns',
  redemption: 'redemption',
  release: 'pending:release',
  expiry: 'expiry',
  inactivity: 'expiry:inactivity',
  adjustment: 'adjustment',
  membership: 'membership',
  qualification: 'tier:qualification',
  debt: 'returns:debt',
} as const;

const cache = new WeakMap<Program, CompiledProgram>();

export function compileProgram(program: Program): CompiledProgram {
  const cached = cache.get(program);
  if (cached !== undefined) return cached;
  const compiled = build(program);
  cache.set(program, compiled);
  return compiled;
}

/** Accepts either form; compiling is cached per program object. */
export function compiledOf(program: Program | CompiledProgram): CompiledProgram {
  return 'compiled' in program ? program : compileProgram(program);
}

function build(program: Program): CompiledProgram {
  const firstCurrency = program.currencies[0];
  assert(firstCurrency !== undefined, 'program has no currencies');
  const defaultCurrency = program.earn.currency ?? firstCurrency.id;
  const currencies = program.currencies.map(
    (currency): CompiledCurrency => ({
      id: currency.id,
      qualifying: currency.qualifying,
      expiry: currency.expiry,
      expiringSoonMs: currency.expiringSoonDays === undefined ? null : currency.expiringSoonDays * DAY_MS,
    }),
  );
  const rules = program.earn.rules.map(
    (rule): CompiledRule => ({
      id: rule.id,
      promotionId: null,
      scope: compileScope(rule.when),
      award: rule.award,
      currency: rule.currency ?? defaultCurrency,
      qualifying: rule.qualifying,
    }),
  );
  const lineRules = rules.filter((rule) => rule.scope.selectsLines);
  const basis = program.tierQualification.basis;
  const tiers = program.tiers.map((tier, index): CompiledTier => {
    const threshold = basis === 'points' ? tier.qualifyingPointsMin : tier.qualifyingSpendMinorMin;
    assert(threshold !== undefined, 'tier threshold missing after validation');
    const earnRule: RuleRef = { id: `${BUILTIN_RULE.tier}:${tier.id}`, promotionId: null, currency: defaultCurrency, qualifying: true };
    return { id: tier.id, name: tier.name, index, threshold, earnMultiplierPercent: tier.earnMultiplierPercent, earnRule };
  });
  const promotions = program.promotions.map(
    (promotion): CompiledPromotion => ({
      id: promotion.id,
      promotionId: promotion.id,
      scope: compileScope(promotion.when),
      award: promotion.award,
      currency: promotion.currency ?? defaultCurrency,
      qualifying: promotion.qualifying,
      startsAtMs: Date.parse(promotion.startsAt),
      endsAtMs: Date.parse(promotion.endsAt),
      tiers: setOrNull(promotion.eligibility.tiers),
      segments: setOrNull(promotion.eligibility.segments),
      attributes: promotion.eligibility.attributes ?? null,
      perMember: promotion.budget.perMember ?? null,
      global: promotion.budget.global ?? null,
    }),
  );
  const promotionById = new Map<string, CompiledPromotion>();
  for (const promotion of promotions) if (!promotionById.has(promotion.id)) promotionById.set(promotion.id, promotion);
  return {
    compiled: true,
    program,
    offsetMinutes: program.utcOffsetMinutes,
    currencies,
    currencyById: new Map(currencies.map((currency) => [currency.id, currency])),
    hasInactivityExpiry: currencies.some((currency) => currency.expiry.kind === 'inactivity'),
    earn: {
      currency: defaultCurrency,
      points: program.earn.points,
      perAmountMinor: program.earn.perAmountMinor,
      rounding: program.earn.rounding,
      pendingMs: program.earn.pendingDays * DAY_MS,
    },
    baseRule: { id: BUILTIN_RULE.base, promotionId: null, currency: defaultCurrency, qualifying: true },
    orderRules: rules.filter((rule) => !rule.scope.selectsLines),
    lineRules,
    lineRulesBySku: indexRules(lineRules, (scope) => scope.skus),
    lineRulesByCategory: indexRules(lineRules, (scope) => scope.categories),
    promotions,
    promotionById,
    tiers,
    tierById: new Map(tiers.map((tier) => [tier.id, tier])),
    tierBasis: basis,
    tierCurrency: program.tierQualification.currency ?? firstCurrency.id,
    tierWindow: program.tierQualification.window,
    tierDowngrade: program.tierQualification.downgrade,
    tierGraceMs: program.tierQualification.graceDays * DAY_MS,
    returns: program.returns ?? null,
    shortfall: program.returns?.shortfall ?? 'floor',
    redemptionCancelMs: program.redemption.cancelWindowDays * DAY_MS,
    rewards: program.redemption.rewards === undefined ? null : new Map(program.redemption.rewards.map((reward) => [reward.id, reward])),
    activitiesByKey: new Map(program.activities.map((activity) => [activityKey(activity.activity, activity.customType), activity])),
    challenges: program.challenges,
    benefitsByTier: groupBy(program.benefits, (benefit) => (benefit.trigger.kind === 'tier_reached' ? benefit.trigger.tierId : null)),
    benefitsByChallenge: groupBy(program.benefits, (benefit) =>
      benefit.trigger.kind === 'challenge_completed' ? benefit.trigger.challengeId : null,
    ),
    milestoneBenefits: program.benefits.filter((benefit) => benefit.trigger.kind === 'points_milestone'),
    autoEnroll: program.membership.autoEnroll,
    unenrollPolicy: program.membership.unenrollPolicy,
    vouchersMax: 500,
    redemptionsMax: 500,
  };
}

function compileScope(scope: Scope): CompiledScope {
  return {
    skus: setOrNull(scope.skus),
    categories: setOrNull(scope.categories),
    channels: setOrNull(scope.channels),
    partners: setOrNull(scope.partners),
    minBasketMinor: scope.minBasketMinor ?? 0,
    selectsLines: scope.skus !== undefined || scope.categories !== undefined,
  };
}

function setOrNull(values: readonly string[] | undefined): ReadonlySet<string> | null {
  return values === undefined ? null : new Set(values);
}

function indexRules(rules: readonly CompiledRule[], keysOf: (scope: CompiledScope) => ReadonlySet<string> | null): Map<string, number[]> {
  const index = new Map<string, number[]>();
  rules.forEach((rule, position) => {
    for (const key of keysOf(rule.scope) ?? []) {
      const list = index.get(key);
      if (list === undefined) index.set(key, [position]);
      else list.push(position);
    }
  });
  return index;
}

function groupBy<T>(items: readonly T[], keyOf: (item: T) => string | null): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    if (key === null) continue;
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [item]);
    else group.push(item);
  }
  return groups;
}
