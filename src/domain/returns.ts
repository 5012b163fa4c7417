import { BUILTIN_RULE } from './compiled.js';
import type { ReturnEvent } from './events.js';
import { lotExpiryMs } from './expiry.js';
import { debitPending, debitQualifying, debitSpendable } from './lots.js';
import { prorate } from './money.js';
import { rejection, type Rejection } from './rejection.js';
import type { OrderCurrency, OrderLine, OrderRecord } from './state.js';
import { removeTierMeasure } from './tier-measure.js';
import { post, readCurrency, writeCurrency, writeList, type Work } from './work.js';

/**
 * Returns and partial refunds. The order remembers what each line earned; a
 * return raises the returned quantities (or the refunded amount), and the
 * clawback is the order's cumulative target minus what was already taken:
 *   target = min(earned, Σ lines prorate(line points, returned, quantity)
 *                        + prorate(earned, refunded, amount paid))
 * so a line is never clawed twice and an order never gives back more than it
 * earned. Pending points of the order go first, then spendable points; what
 * the member no longer has follows the program's shortfall policy.
 */

export function applyReturn(work: Work, event: ReturnEvent): Rejection | null {
  const program = work.program;
  if (program.returns === null) return rejection('RETURNS_DISABLED', 'this program does not take returns');
  const index = work.state.orders.findIndex((order) => order.orderId === event.orderId);
  const order = work.state.orders[index];
  if (order === undefined) {
    return rejection('ORDER_NOT_FOUND', `order ${event.orderId} is unknown for this member, or its return window has closed`);
  }
  if (event.currency !== undefined && event.currency !== order.currencyCode) {
    return rejection('CURRENCY_NOT_ACCEPTED', `order ${order.orderId} was paid in ${order.currencyCode}, not ${event.currency}`);
  }
  const updated = event.lines === undefined ? refundAmount(order, event.amountMinor!) : returnLines(order, event.lines);
  if ('code' in updated) return updated;
  const clawedBack: Record<string, number> = {};
  const shortfall: Record<string, number> = {};
  const currencies = order.currencies.map((entry) => {
    const next = clawCurrency(work, order, updated, entry);
    clawedBack[entry.currency] = next.clawed - entry.clawed;
    const missing = next.shortfall;
    if (missing > 0) shortfall[entry.currency] = missing;
    return next.entry;
  });
  const spendClawedMinor = clawSpend(work, order, updated);
  writeList(work, 'orders')[index] = { ...order, ...updated, currencies, spendClawedMinor };
  work.outcomes.push({
    kind: 'return',
    eventId: work.eventId,
    memberId: work.state.memberId,
    occurredAtMs: work.atMs,
    orderId: order.orderId,
    clawedBack,
    shortfall,
  });
  return null;
}

interface ReturnedState {
  readonly lines: readonly OrderLine[];
  readonly refundedMinor: number;
}

function returnLines(order: OrderRecord, requested: readonly { sku: string; quantity: number }[]): ReturnedState | Rejection {
  const lines = order.lines.slice();
  for (const { sku, quantity } of requested) {
    let left = quantity;
    // Several lines may carry the same SKU: fill them in order.
    for (let index = 0; index < lines.length && left > 0; index++) {
      const line = lines[index]!;
      if (line.sku !== sku) continue;
      const taken = Math.min(line.quantity - line.returned, left);
      if (taken === 0) continue;
      lines[index] = { ...line, returned: line.returned + taken };
      left -= taken;
    }
    if (left > 0) {
      const bought = order.lines.filter((line) => line.sku === sku).reduce((sum, line) => sum + line.quantity, 0);
      return rejection('RETURN_EXCEEDS_ORDER', `order ${order.orderId} has ${bought} of ${sku}; the returns would exceed it by ${left}`);
    }
  }
  return { lines, refundedMinor: order.refundedMinor };
}

function refundAmount(order: OrderRecord, amountMinor: number): ReturnedState | Rejection {
  const refundedMinor = order.refundedMinor + amountMinor;
  if (refundedMinor > order.amountMinor) {
    return rejection(
      'REFUND_EXCEEDS_ORDER',
      `order ${order.orderId} paid ${order.amountMinor}; ${order.refundedMinor} already refunded, ${amountMinor} more would exceed it`,
    );
  }
  return { lines: order.lines, refundedMinor };
}

/** The cumulative points of one currency the order gives back after these returns. */
function clawTarget(order: OrderRecord, returned: ReturnedState, entry: OrderCurrency): number {
  let fromLines = 0;
  for (const line of returned.lines) {
    const points = Object.hasOwn(line.points, entry.currency) ? line.points[entry.currency]! : 0;
    if (points > 0 && line.returned > 0) fromLines += prorate(points, line.returned, line.quantity);
  }
  const fromAmount = returned.refundedMinor > 0 ? prorate(entry.earned, returned.refundedMinor, order.amountMinor) : 0;
  return Math.min(entry.earned, fromLines + fromAmount);
}

function clawCurrency(
  work: Work,
  order: OrderRecord,
  returned: ReturnedState,
  entry: OrderCurrency,
): { entry: OrderCurrency; clawed: number; shortfall: number } {
  const target = clawTarget(order, returned, entry);
  const delta = target - entry.clawed;
  if (delta <= 0) return { entry, clawed: entry.clawed, shortfall: 0 };
  const currencyId = entry.currency;
  const details = { reference: order.orderId };
  const expiresAtMs = lotExpiryMs(work.program, currencyId, order.atMs);
  // Points still pending are simply cancelled: the member never had them.
  let fromPending = 0;
  if (order.releaseAtMs > work.atMs && entry.pendingLeft > 0) {
    fromPending = debitPending(work, currencyId, Math.min(entry.pendingLeft, delta), order.releaseAtMs, expiresAtMs, 'clawback', BUILTIN_RULE.returns, details);
  }
  const shortfall = clawSpendable(work, currencyId, delta - fromPending, expiresAtMs, order.orderId);
  const qualifyingTarget = prorate(entry.qualifyingEarned, target, entry.earned);
  const qualifyingDelta = qualifyingTarget - entry.qualifyingClawed;
  if (qualifyingDelta > 0) debitQualifying(work, currencyId, qualifyingDelta, order.tierBucketKey, 'clawback', BUILTIN_RULE.returns, details);
  const currency = writeCurrency(work, currencyId);
  currency.lifetimeEarned = Math.max(0, currency.lifetimeEarned - delta);
  return {
    entry: {
      ...entry,
      clawed: target,
      qualifyingClawed: qualifyingTarget,
      pendingLeft: entry.pendingLeft - fromPending,
    },
    clawed: target,
    shortfall,
  };
}

/**
 * Takes `points` of spendable balance back, the order's own lot first. What
 * the member no longer has: `negative` lets the balance go below zero,
 * `debt` records it to be repaid from future credits, `floor` forgives it.
 * Returns the part not taken from the balance (forgiven or owed).
 */
function clawSpendable(work: Work, currencyId: string, points: number, expiresAtMs: number | null, orderId: string): number {
  if (points <= 0) return 0;
  const details = { reference: orderId };
  const available = Math.max(0, readCurrency(work.state, currencyId).spendable);
  const taken = Math.min(available, points);
  if (taken > 0) debitSpendable(work, currencyId, taken, 'clawback', BUILTIN_RULE.returns, details, expiresAtMs);
  const rest = points - taken;
  if (rest === 0) return 0;
  const policy = work.program.shortfall;
  const currency = writeCurrency(work, currencyId);
  if (policy === 'negative') {
    post(work, currency, currencyId, 'spendable', -rest, 'clawback', BUILTIN_RULE.returns, details);
    return 0;
  }
  if (policy === 'debt') post(work, currency, currencyId, 'debt', rest, 'debt', BUILTIN_RULE.debt, details);
  return rest;
}

/** Spend-based tiers: the refunded share of what was paid leaves the tier measure. */
function clawSpend(work: Work, order: OrderRecord, returned: ReturnedState): number {
  if (work.program.tierBasis !== 'spend') return order.spendClawedMinor;
  let returnedValue = 0;
  let totalValue = 0;
  for (const line of returned.lines) {
    totalValue += line.valueMinor;
    returnedValue += line.returned === 0 ? 0 : prorate(line.valueMinor, line.returned, line.quantity);
  }
  const fromLines = totalValue > 0 ? prorate(order.amountMinor, returnedValue, totalValue) : 0;
  const target = Math.min(order.amountMinor, fromLines + returned.refundedMinor);
  const delta = target - order.spendClawedMinor;
  if (delta > 0) removeTierMeasure(work, order.tierBucketKey, delta);
  return Math.max(target, order.spendClawedMinor);
}
