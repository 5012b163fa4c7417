import { assertSafeInteger } from './assert.js';
import { checkMilestones, recordPurchaseForChallenges } from './benefits.js';
import type { CompiledProgram, CompiledRule, RuleRef } from './compiled.js';
import type { LineItem, PurchaseEvent } from './events.js';
import { lotExpiryMs } from './expiry.js';
import { creditPending, creditQualifying, creditSpendable } from './lots.js';
import { allocate, multiplyRounded, pointsForAmount } from './money.js';
import { paidEarn } from './paid-membership.js';
import type { Award } from './program.js';
import { isEligible, orderConditionsHold, takeBudget } from './promotions.js';
import { rejection, type Rejection } from './rejection.js';
import type { OrderCurrency, OrderLine, OrderRecord } from './state.js';
import { addTierMeasure, bucketKeyFor } from './tier-measure.js';
import { tierOf, upgradeIfQualified } from './tiers.js';
import { DAY_MS, dayStartMs } from './time.js';
import { appendToList, dropListHead, hasOrderId, writeCurrency, writeList, type EntryDetails, type Mutable, type Work } from './work.js';

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

const NO_ITEMS: readonly LineItem[] = Object.freeze([]);

function buildBasket(program: CompiledProgram, event: PurchaseEvent): Basket {
  const items = event.items ?? NO_ITEMS;
  let values: number[];
  if (items.length === 0) {
    values = [event.amountMinor];
  } else {
    values = new Array<number>(items.length);
    for (let line = 0; line < items.length; line++) {
      const item = items[line]!;
      const value = item.quantity * item.unitPriceMinor;
      assertSafeInteger(value, 'line value');
      values[line] = value;
    }
  }
  const base = pointsForAmount(event.amountMinor, program.earn.points, program.earn.perAmountMinor, program.earn.rounding);
  // Base points are earned on what was paid; lines share them by value.
  return { items, values, base, baseByLine: allocate(base, values) };
}

/** The points an award gives, per line; `lines` null means the whole order. */
function awardPerLine(program: CompiledProgram, award: Award, basket: Basket, lines: readonly number[] | null): number[] {
  const rounding = program.earn.rounding;
  if (lines === null) {
    if (award.kind === 'multiplier') {
      return allocate(multiplyRounded(basket.base, award.percent - 100, 100, rounding), basket.baseByLine);
    }
    return allocate(award.points, basket.values);
  }
  const perLine = new Array<number>(basket.values.length).fill(0);
  if (award.kind === 'multiplier') {
    for (let position = 0; position < lines.length; position++) {
      const line = lines[position]!;
      perLine[line] = multiplyRounded(basket.baseByLine[line]!, award.percent - 100, 100, rounding);
    }
  } else if (award.per === 'unit') {
    for (let position = 0; position < lines.length; position++) {
      const line = lines[position]!;
      perLine[line] = award.points * basket.items[line]!.quantity;
    }
  } else {
    const weights = new Array<number>(lines.length);
    for (let position = 0; position < lines.length; position++) weights[position] = basket.values[lines[position]!]!;
    const shares = allocate(award.points, weights);
    for (let position = 0; position < lines.length; position++) perLine[lines[position]!] = shares[position]!;
  }
  return perLine;
}

function component(rule: RuleRef, perLine: readonly number[]): EarnComponent {
  let total = 0;
  for (let line = 0; line < perLine.length; line++) total += perLine[line]!;
  assertSafeInteger(total, 'component total');
  return { ruleId: rule.id, promotionId: rule.promotionId, currency: rule.currency, qualifying: rule.qualifying, perLine, total };
}

/** Components that give nothing are left out. */
function addComponent(components: EarnComponent[], item: EarnComponent): void {
  if (item.total > 0) components.push(item);
}

/**
 * Lines each line rule selects, by rule index (undefined: none), found through
 * the SKU and category indexes (no scan of all rules); null when no rule matched.
 */
function lineRuleMatches(program: CompiledProgram, basket: Basket): (number[] | undefined)[] | null {
  if (program.lineRules.length === 0) return null;
  let matches: (number[] | undefined)[] | null = null;
  const items = basket.items;
  for (let line = 0; line < items.length; line++) {
    const item = items[line]!;
    const bySku = program.lineRulesBySku.get(item.sku);
    if (bySku !== undefined) matches = addMatches(program, matches, bySku, line);
    if (item.category !== undefined) {
      const byCategory = program.lineRulesByCategory.get(item.category);
      if (byCategory !== undefined) matches = addMatches(program, matches, byCategory, line);
    }
  }
  return matches;
}

function addMatches(
  program: CompiledProgram,
  matches: (number[] | undefined)[] | null,
  ruleIndexes: readonly number[],
  line: number,
): (number[] | undefined)[] {
  const found = matches ?? new Array<number[] | undefined>(program.lineRules.length).fill(undefined);
  for (let position = 0; position < ruleIndexes.length; position++) {
    const ruleIndex = ruleIndexes[position]!;
    const lines = found[ruleIndex];
    if (lines === undefined) found[ruleIndex] = [line];
    else if (lines[lines.length - 1] !== line) lines.push(line);
  }
  return found;
}

function promotionLines(scope: CompiledRule['scope'], items: readonly LineItem[]): number[] {
  const lines: number[] = [];
  for (let line = 0; line < items.length; line++) {
    const item = items[line]!;
    if (scope.skus?.has(item.sku) === true || (item.category !== undefined && scope.categories?.has(item.category) === true)) lines.push(line);
  }
  return lines;
}

/**
 * Every component of a purchase, in a fixed order: base, tier multiplier,
 * paid membership multiplier, order rules, line rules, promotions (program order within each). Takes
 * promotion budgets, so call it only once the purchase is accepted.
 */
export function earnComponents(work: Work, event: PurchaseEvent, basket: Basket): EarnComponent[] {
  const program = work.program;
  const components: EarnComponent[] = [];
  addComponent(components, component(program.baseRule, basket.baseByLine));
  const tier = tierOf(program, work.state.tierId);
  if (tier.earnMultiplierPercent > 100) {
    const extra = multiplyRounded(basket.base, tier.earnMultiplierPercent - 100, 100, program.earn.rounding);
    addComponent(components, component(tier.earnRule, allocate(extra, basket.baseByLine)));
  }
  // A paid membership's multiplier, like a tier's: on base points (earn:paid:<planId>).
  const paid = work.state.paid === undefined ? null : paidEarn(work);
  if (paid !== null) {
    const extra = multiplyRounded(basket.base, paid.percent - 100, 100, program.earn.rounding);
    addComponent(components, component(paid.rule, allocate(extra, basket.baseByLine)));
  }
  const orderRules = program.orderRules;
  for (let index = 0; index < orderRules.length; index++) {
    const rule = orderRules[index]!;
    if (orderConditionsHold(rule.scope, event)) addComponent(components, component(rule, awardPerLine(program, rule.award, basket, null)));
  }
  const matches = lineRuleMatches(program, basket);
  if (matches !== null) {
    // By rule index: program order.
    for (let ruleIndex = 0; ruleIndex < matches.length; ruleIndex++) {
      const lines = matches[ruleIndex];
      if (lines === undefined) continue;
      const rule = program.lineRules[ruleIndex]!;
      if (orderConditionsHold(rule.scope, event)) addComponent(components, component(rule, awardPerLine(program, rule.award, basket, lines)));
    }
  }
  const promotions = program.promotions;
  if (promotions.length > 0) {
    const state = work.state;
    const atMs = work.atMs;
    for (let index = 0; index < promotions.length; index++) {
      // The checks of applicablePromotions; budgets are taken in the same program order.
      const promotion = promotions[index]!;
      if (atMs < promotion.startsAtMs || atMs >= promotion.endsAtMs) continue;
      if (!isEligible(promotion, state) || !orderConditionsHold(promotion.scope, event)) continue;
      const lines = promotion.scope.selectsLines ? promotionLines(promotion.scope, basket.items) : null;
      if (lines !== null && lines.length === 0) continue;
      const wanted = component(promotion, awardPerLine(program, promotion.award, basket, lines));
      const granted = takeBudget(work, promotion, wanted.total);
      if (granted === wanted.total) addComponent(components, wanted);
      else if (granted > 0) addComponent(components, component(promotion, allocate(granted, wanted.perLine)));
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
  if (program.returns !== null && hasOrderId(work.state.orders, orderId)) {
    return rejection('DUPLICATE_ORDER', `order ${orderId} was already recorded for this member`);
  }
  const basket = buildBasket(program, event);
  const components = earnComponents(work, event, basket);
  const atMs = work.atMs;
  const releaseAtMs = program.earn.pendingMs > 0 ? dayStartMs(atMs, program.offsetMinutes) + program.earn.pendingMs + DAY_MS : null;
  const bucketKey = bucketKeyFor(program, work.state, atMs);
  let expiryCurrency = '';
  let expiresAtMs: number | null = null;
  // One details object for every component without a promotion: post copies what it needs.
  const details: EntryDetails = { reference: orderId };
  for (let index = 0; index < components.length; index++) {
    const item = components[index]!;
    // Calendar arithmetic is the costly part of a credit: once per currency per purchase.
    if (item.currency !== expiryCurrency) {
      expiryCurrency = item.currency;
      expiresAtMs = lotExpiryMs(program, item.currency, atMs);
    }
    creditComponent(work, item, item.promotionId === null ? details : { reference: orderId, promotionId: item.promotionId }, releaseAtMs, expiresAtMs, bucketKey);
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
  details: EntryDetails,
  releaseAtMs: number | null,
  expiresAtMs: number | null,
  bucketKey: number,
): void {
  const program = work.program;
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
  const items = basket.items;
  const lines = new Array<OrderLine>(items.length);
  for (let line = 0; line < items.length; line++) {
    const item = items[line]!;
    const points: Record<string, number> = {};
    for (let index = 0; index < components.length; index++) {
      const part = components[index]!;
      const share = part.perLine[line]!;
      if (share > 0) points[part.currency] = (points[part.currency] ?? 0) + share;
    }
    lines[line] = { sku: item.sku, quantity: item.quantity, returned: 0, valueMinor: basket.values[line]!, points };
  }
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
  const current = work.state.orders;
  let index = current.length;
  while (index > 0 && current[index - 1]!.closesAtMs > order.closesAtMs) index -= 1;
  let orders: OrderRecord[];
  if (index === current.length) {
    orders = appendToList(work, 'orders', order);
  } else {
    orders = writeList(work, 'orders');
    orders.splice(index, 0, order);
  }
  // Bounded state: beyond the maximum, the oldest orders can no longer be returned.
  if (orders.length > returns.ordersMax) dropListHead(work, 'orders', orders.length - returns.ordersMax);
}
