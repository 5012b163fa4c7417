import { assertSafeInteger } from './assert.js';
import { checkMilestones, recordPurchaseForChallenges } from './benefits.js';
import { BUILTIN_RULE, type CompiledProgram, type CompiledRule } from './compiled.js';
import type { LineItem, PurchaseEvent } from './events.js';
import { lotExpiryMs } from './expiry.js';
import { creditPending, creditQualifying, creditSpendable } from './lots.js';
import { allocate, multiplyRounded, pointsForAmount } from './money.js';
import type { Award } from './program.js';
import { applicablePromotions, orderConditionsHold, takeBudget } from './promotions.js';
import { rejection, type Rejection } from './rejection.js';
import type { OrderCurrency, OrderLine, OrderRecord } from './state.js';
import { addTierMeasure, bucketKeyFor } from './tier-measure.js';
import { tierOf, upgradeIfQualified } from './tiers.js';
import { DAY_MS, dayStartMs } from './time.js';
import { writeCurrency, writeList, type Mutable, type Work } from './work.js';

/**
 * Purchase earn: base points on the amount paid, tier multiplier, earn rules
 * (by SKU, category, channel, partner, basket) and promotions. Every piece is
 * a component that names its rule, and every component is attributed to the
 * order's lines, so a return takes back exactly what the returned lines
 * earned, bonuses and multipliers included.
 */

/** Points one rule gave one order, split over the order's lines (one virtual line without items). */
export interface EarnComponent {
  readonly ruleId: string;
  readonly promotionId: string | null;
  readonly currency: string;
  readonly qualifying: boolean;
  readonly perLine: readonly number[];
  readonly total: number;
}

interface Basket {
  readonly items: readonly LineItem[];
  /** Line values in minor units (the amount paid for a virtual line). */
  readonly values: readonly number[];
  readonly base: number;
  readonly baseByLine: readonly number[];
}

function buildBasket(program: CompiledProgram, event: PurchaseEvent): Basket {
  const items = event.items ?? [];
  const values = items.length === 0 ? [event.amountMinor] : items.map(lineValue);
  const base = pointsForAmount(event.amountMinor, program.earn.points, program.earn.perAmountMinor, program.earn.rounding);
  // Base points are earned on what was paid; lines share them by value.
  return { items, values, base, baseByLine: allocate(base, values) };
}

function lineValue(item: LineItem): number {
  const value = item.quantity * item.unitPriceMinor;
  assertSafeInteger(value, 'line value');
  return value;
}

/** The points an award gives, per line; `lines` null means the whole order. */
function awardPerLine(program: CompiledProgram, award: Award, basket: Basket, lines: readonly number[] | null): number[] {
  const rounding = program.earn.rounding;
  const perLine = new Array<number>(basket.values.length).fill(0);
  if (lines === null) {
    if (award.kind === 'multiplier') {
      return allocate(multiplyRounded(basket.base, award.percent - 100, 100, rounding), basket.baseByLine);
    }
    return allocate(award.points, basket.values);
  }
  if (award.kind === 'multiplier') {
    for (const line of lines) perLine[line] = multiplyRounded(basket.baseByLine[line]!, award.percent - 100, 100, rounding);
  } else if (award.per === 'unit') {
    for (const line of lines) perLine[line] = award.points * basket.items[line]!.quantity;
  } else {
    const shares = allocate(award.points, lines.map((line) => basket.values[line]!));
    lines.forEach((line, position) => (perLine[line] = shares[position]!));
  }
  return perLine;
}

function component(rule: Pick<CompiledRule, 'id' | 'promotionId' | 'currency' | 'qualifying'>, perLine: readonly number[]): EarnComponent {
  let total = 0;
  for (const points of perLine) total += points;
  assertSafeInteger(total, 'component total');
  return { ruleId: rule.id, promotionId: rule.promotionId, currency: rule.currency, qualifying: rule.qualifying, perLine, total };
}

/** Lines each line rule selects, found through the SKU and category indexes (no scan of all rules). */
function lineRuleMatches(program: CompiledProgram, basket: Basket): Map<number, number[]> {
  const matches = new Map<number, number[]>();
  if (program.lineRules.length === 0) return matches;
  basket.items.forEach((item, line) => {
    const add = (ruleIndex: number) => {
      const lines = matches.get(ruleIndex);
      if (lines === undefined) matches.set(ruleIndex, [line]);
      else if (lines[lines.length - 1] !== line) lines.push(line);
    };
    for (const ruleIndex of program.lineRulesBySku.get(item.sku) ?? []) add(ruleIndex);
    if (item.category !== undefined) for (const ruleIndex of program.lineRulesByCategory.get(item.category) ?? []) add(ruleIndex);
  });
  return matches;
}

function promotionLines(scope: CompiledRule['scope'], items: readonly LineItem[]): number[] {
  const lines: number[] = [];
  items.forEach((item, line) => {
    if (scope.skus?.has(item.sku) === true || (item.category !== undefined && scope.categories?.has(item.category) === true)) lines.push(line);
  });
  return lines;
}

/**
 * Every component of a purchase, in a fixed order: base, tier multiplier,
 * order rules, line rules, promotions (program order within each). Takes
 * promotion budgets, so call it only once the purchase is accepted.
 */
export function earnComponents(work: Work, event: PurchaseEvent, basket: Basket): EarnComponent[] {
  const program = work.program;
  const components: EarnComponent[] = [];
  const add = (item: EarnComponent) => {
    if (item.total > 0) components.push(item);
  };
  const baseRule = { id: BUILTIN_RULE.base, promotionId: null, currency: program.earn.currency, qualifying: true };
  add(component(baseRule, basket.baseByLine));
  const tier = tierOf(program, work.state.tierId);
  if (tier.earnMultiplierPercent > 100) {
    const tierRule = { id: `${BUILTIN_RULE.tier}:${tier.id}`, promotionId: null, currency: program.earn.currency, qualifying: true };
    add(component(tierRule, awardPerLine(program, { kind: 'multiplier', percent: tier.earnMultiplierPercent }, basket, null)));
  }
  for (const rule of program.orderRules) {
    if (orderConditionsHold(rule.scope, event)) add(component(rule, awardPerLine(program, rule.award, basket, null)));
  }
  const matches = lineRuleMatches(program, basket);
  if (matches.size > 0) {
    for (const ruleIndex of [...matches.keys()].sort((left, right) => left - right)) {
      const rule = program.lineRules[ruleIndex]!;
      if (orderConditionsHold(rule.scope, event)) add(component(rule, awardPerLine(program, rule.award, basket, matches.get(ruleIndex)!)));
    }
  }
  if (program.promotions.length > 0) {
    for (const promotion of applicablePromotions(program, work.state, event, work.atMs)) {
      const lines = promotion.scope.selectsLines ? promotionLines(promotion.scope, basket.items) : null;
      if (lines !== null && lines.length === 0) continue;
      const wanted = component(promotion, awardPerLine(program, promotion.award, basket, lines));
      const granted = takeBudget(work, promotion, wanted.total);
      if (granted === wanted.total) add(wanted);
      else if (granted > 0) add(component(promotion, allocate(granted, wanted.perLine)));
    }
  }
  return components;
}

export function applyPurchase(work: Work, event: PurchaseEvent): Rejection | null {
  const program = work.program;
  if (event.currency !== program.program.currency) {
    return rejection('CURRENCY_NOT_ACCEPTED', `the program accepts ${program.program.currency}, not ${event.currency}`);
  }
  const orderId = event.orderId ?? event.id;
  if (program.returns !== null && work.state.orders.some((order) => order.orderId === orderId)) {
    return rejection('DUPLICATE_ORDER', `order ${orderId} was already recorded for this member`);
  }
  const basket = buildBasket(program, event);
  const components = earnComponents(work, event, basket);
  const atMs = work.atMs;
  const releaseAtMs = program.earn.pendingMs > 0 ? dayStartMs(atMs, program.offsetMinutes) + program.earn.pendingMs + DAY_MS : null;
  const bucketKey = bucketKeyFor(program, work.state, atMs);
  let expiryCurrency = '';
  let expiresAtMs: number | null = null;
  for (const item of components) {
    // Calendar arithmetic is the costly part of a credit: once per currency per purchase.
    if (item.currency !== expiryCurrency) {
      expiryCurrency = item.currency;
      expiresAtMs = lotExpiryMs(program, item.currency, atMs);
    }
    creditComponent(work, item, orderId, releaseAtMs, expiresAtMs, bucketKey);
  }
  if (program.tierBasis === 'spend' && event.amountMinor > 0) addTierMeasure(work, bucketKey, event.amountMinor);
  if (program.returns !== null) recordOrder(work, event, orderId, basket, components, releaseAtMs, bucketKey);
  work.state.lastActivityMs = Math.max(work.state.lastActivityMs, atMs);
  recordPurchaseForChallenges(work, event.amountMinor);
  for (const currencyId of work.touched) checkMilestones(work, currencyId);
  upgradeIfQualified(work);
  return null;
}

function creditComponent(
  work: Work,
  item: EarnComponent,
  orderId: string,
  releaseAtMs: number | null,
  expiresAtMs: number | null,
  bucketKey: number,
): void {
  const program = work.program;
  const details = item.promotionId === null ? { reference: orderId } : { reference: orderId, promotionId: item.promotionId };
  if (releaseAtMs === null) creditSpendable(work, item.currency, item.total, expiresAtMs, 'earn', item.ruleId, details);
  else creditPending(work, item.currency, item.total, releaseAtMs, expiresAtMs, 'earn', item.ruleId, details);
  if (item.qualifying && program.currencyById.get(item.currency)!.qualifying) {
    creditQualifying(work, item.currency, item.total, bucketKey, 'earn', item.ruleId, details);
  }
  writeCurrency(work, item.currency).lifetimeEarned += item.total;
}

/** Keeps what a return needs: per line and per currency, what the order earned. */
function recordOrder(
  work: Work,
  event: PurchaseEvent,
  orderId: string,
  basket: Basket,
  components: readonly EarnComponent[],
  releaseAtMs: number | null,
  bucketKey: number,
): void {
  const returns = work.program.returns!;
  const currencies: Mutable<OrderCurrency>[] = [];
  for (const item of components) {
    let entry: Mutable<OrderCurrency> | undefined;
    for (const candidate of currencies) if (candidate.currency === item.currency) entry = candidate;
    if (entry === undefined) {
      entry = { currency: item.currency, earned: 0, qualifyingEarned: 0, clawed: 0, qualifyingClawed: 0, pendingLeft: 0 };
      currencies.push(entry);
    }
    entry.earned += item.total;
    if (item.qualifying && work.program.currencyById.get(item.currency)!.qualifying) entry.qualifyingEarned += item.total;
    if (releaseAtMs !== null) entry.pendingLeft += item.total;
  }
  const lines: OrderLine[] = basket.items.map((item, line) => {
    const points: Record<string, number> = {};
    for (const part of components) {
      const share = part.perLine[line]!;
      if (share > 0) points[part.currency] = (points[part.currency] ?? 0) + share;
    }
    return { sku: item.sku, quantity: item.quantity, returned: 0, valueMinor: basket.values[line]!, points };
  });
  const atMs = work.atMs;
  const order: OrderRecord = {
    orderId,
    eventId: event.id,
    atMs,
    closesAtMs: dayStartMs(atMs, work.program.offsetMinutes) + (returns.windowDays + 1) * DAY_MS,
    releaseAtMs: releaseAtMs ?? atMs,
    amountMinor: event.amountMinor,
    currencyCode: event.currency,
    refundedMinor: 0,
    spendClawedMinor: 0,
    tierBucketKey: bucketKey,
    currencies,
    lines,
  };
  const orders = writeList(work, 'orders');
  let index = orders.length;
  while (index > 0 && orders[index - 1]!.closesAtMs > order.closesAtMs) index -= 1;
  orders.splice(index, 0, order);
  // Bounded state: beyond the maximum, the oldest orders can no longer be returned.
  if (orders.length > returns.ordersMax) orders.splice(0, orders.length - returns.ordersMax);
}
