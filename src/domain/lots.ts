import { assert } from './assert.js';
import { BUILTIN_RULE } from './compiled.js';
import type { LedgerKind, Lot, PendingLot } from './state.js';
import { addTierMeasure, removeTierMeasure } from './tier-measure.js';
import { post, writeCurrency, type EntryDetails, type MutableCurrency, type Work } from './work.js';

/**
 * Lots: spendable points grouped by expiry. Lots with the same expiry are
 * merged, so a member holds at most one lot per expiry date, and a redemption
 * takes the soonest-expiring points first (no-expiry points last).
 */

/** Adds points to the lot expiring at `expiresAtMs`, keeping the list sorted (null last). */
export function insertLot(lots: Lot[], expiresAtMs: number | null, points: number): void {
  assert(points > 0, 'a lot gets positive points');
  let index = 0;
  while (index < lots.length && expiresBefore(lots[index]!.expiresAtMs, expiresAtMs)) index += 1;
  const at = lots[index];
  if (at !== undefined && at.expiresAtMs === expiresAtMs) lots[index] = { expiresAtMs, points: at.points + points };
  else lots.splice(index, 0, { expiresAtMs, points });
}

/** Whether a expires strictly before b; null (never) is last. */
function expiresBefore(a: number | null, b: number | null): boolean {
  if (a === null) return false;
  if (b === null) return true;
  return a < b;
}

/**
 * Takes `points` from the lots, soonest expiry first (or the lot expiring at
 * `preferExpiresAtMs` first, for a clawback of points whose own lot is known).
 * Empty lots are removed. Returns what was taken from which lot.
 */
export function takeFromLots(lots: Lot[], points: number, preferExpiresAtMs?: number | null): Lot[] {
  const taken: Lot[] = [];
  let left = points;
  if (preferExpiresAtMs !== undefined) {
    const index = lots.findIndex((lot) => lot.expiresAtMs === preferExpiresAtMs);
    if (index >= 0) left -= takeAt(lots, index, left, taken);
  }
  while (left > 0) {
    assert(lots.length > 0, 'lots hold fewer points than the spendable balance');
    left -= takeAt(lots, 0, left, taken);
  }
  return taken;
}

function takeAt(lots: Lot[], index: number, wanted: number, taken: Lot[]): number {
  const lot = lots[index]!;
  const amount = Math.min(lot.points, wanted);
  if (amount === lot.points) lots.splice(index, 1);
  else lots[index] = { expiresAtMs: lot.expiresAtMs, points: lot.points - amount };
  taken.push({ expiresAtMs: lot.expiresAtMs, points: amount });
  return amount;
}

/**
 * Credits spendable points into the lot of their expiry. A negative balance
 * (shortfall `negative`) or a debt (shortfall `debt`) is repaid first: only
 * what is left after repaying lands in a lot.
 */
export function creditSpendable(
  work: Work,
  currencyId: string,
  points: number,
  expiresAtMs: number | null,
  kind: LedgerKind,
  ruleId: string,
  details?: EntryDetails,
): void {
  assert(points > 0, 'a credit is positive');
  const currency = writeCurrency(work, currencyId);
  const negativeBefore = Math.max(0, -currency.spendable);
  post(work, currency, currencyId, 'spendable', points, kind, ruleId, details, expiresAtMs);
  let toLot = points - Math.min(points, negativeBefore);
  if (currency.debt > 0 && toLot > 0) {
    const repay = Math.min(currency.debt, toLot);
    post(work, currency, currencyId, 'spendable', -repay, 'debt_repayment', BUILTIN_RULE.debt, undefined, expiresAtMs);
    post(work, currency, currencyId, 'debt', -repay, 'debt_repayment', BUILTIN_RULE.debt);
    toLot -= repay;
  }
  if (toLot > 0) insertLot(currency.lots, expiresAtMs, toLot);
}

/**
 * Debits spendable points that the member has (the caller checked), one
 * ledger entry per lot touched so every entry names its lot. Returns the lots taken.
 */
export function debitSpendable(
  work: Work,
  currencyId: string,
  points: number,
  kind: LedgerKind,
  ruleId: string,
  details?: EntryDetails,
  preferExpiresAtMs?: number | null,
): Lot[] {
  assert(points > 0, 'a debit is positive');
  const currency = writeCurrency(work, currencyId);
  assert(currency.spendable >= points, 'debit beyond the spendable balance');
  const taken = takeFromLots(currency.lots, points, preferExpiresAtMs);
  for (const lot of taken) {
    post(work, currency, currencyId, 'spendable', -lot.points, kind, ruleId, details, lot.expiresAtMs);
  }
  return taken;
}

/** Removes whole lots (expiry, forfeit): one entry per lot, at the moment it took effect. */
export function removeLots(
  work: Work,
  currency: MutableCurrency,
  currencyId: string,
  count: number,
  kind: LedgerKind,
  ruleId: string,
  effectiveAtMs: (lot: Lot) => number,
): number {
  let removed = 0;
  for (const lot of currency.lots.splice(0, count)) {
    post(work, currency, currencyId, 'spendable', -lot.points, kind, ruleId, { occurredAtMs: effectiveAtMs(lot) }, lot.expiresAtMs);
    removed += lot.points;
  }
  return removed;
}

/** Adds pending points, merged with others released and expiring at the same moments. */
export function creditPending(
  work: Work,
  currencyId: string,
  points: number,
  releaseAtMs: number,
  expiresAtMs: number | null,
  kind: LedgerKind,
  ruleId: string,
  details?: EntryDetails,
): void {
  assert(points > 0, 'a pending credit is positive');
  const currency = writeCurrency(work, currencyId);
  post(work, currency, currencyId, 'pending', points, kind, ruleId, details, expiresAtMs, releaseAtMs);
  const lots = currency.pendingLots;
  let index = lots.length;
  while (index > 0 && lots[index - 1]!.releaseAtMs > releaseAtMs) index -= 1;
  const previous = lots[index - 1];
  if (previous !== undefined && previous.releaseAtMs === releaseAtMs && previous.expiresAtMs === expiresAtMs) {
    lots[index - 1] = { releaseAtMs, expiresAtMs, points: previous.points + points };
  } else {
    lots.splice(index, 0, { releaseAtMs, expiresAtMs, points });
  }
}

/** Takes points back from one pending lot (a return inside the holding period). Returns what was taken. */
export function debitPending(
  work: Work,
  currencyId: string,
  points: number,
  releaseAtMs: number,
  expiresAtMs: number | null,
  kind: LedgerKind,
  ruleId: string,
  details?: EntryDetails,
): number {
  const currency = writeCurrency(work, currencyId);
  const index = currency.pendingLots.findIndex((lot) => lot.releaseAtMs === releaseAtMs && lot.expiresAtMs === expiresAtMs);
  if (index < 0) return 0;
  const lot: PendingLot = currency.pendingLots[index]!;
  const amount = Math.min(lot.points, points);
  if (amount === 0) return 0;
  if (amount === lot.points) currency.pendingLots.splice(index, 1);
  else currency.pendingLots[index] = { releaseAtMs, expiresAtMs, points: lot.points - amount };
  post(work, currency, currencyId, 'pending', -amount, kind, ruleId, details, expiresAtMs, releaseAtMs);
  return amount;
}

/**
 * Credits tier-qualifying points. For the tier currency (basis points) they
 * also go into the month bucket that moves the qualification window.
 */
export function creditQualifying(
  work: Work,
  currencyId: string,
  points: number,
  bucketKey: number,
  kind: LedgerKind,
  ruleId: string,
  details?: EntryDetails,
): void {
  assert(points > 0, 'a qualifying credit is positive');
  const currency = writeCurrency(work, currencyId);
  post(work, currency, currencyId, 'qualifying', points, kind, ruleId, details);
  if (isTierCurrency(work, currencyId)) addTierMeasure(work, bucketKey, points);
}

/**
 * Takes qualifying points back, never below what is left in the window
 * (points whose window already closed cannot be taken twice): a return names
 * its order's month (`bucketKey`), taken first; a debit (null) takes the
 * newest months first (removeTierMeasure has the rule). Returns what was taken.
 */
export function debitQualifying(
  work: Work,
  currencyId: string,
  points: number,
  bucketKey: number | null,
  kind: LedgerKind,
  ruleId: string,
  details?: EntryDetails,
): number {
  const currency = writeCurrency(work, currencyId);
  const amount = isTierCurrency(work, currencyId)
    ? removeTierMeasure(work, bucketKey, points)
    : Math.min(points, Math.max(0, currency.qualifying));
  if (amount > 0) post(work, currency, currencyId, 'qualifying', -amount, kind, ruleId, details);
  return amount;
}

function isTierCurrency(work: Work, currencyId: string): boolean {
  return work.program.tierBasis === 'points' && work.program.tierCurrency === currencyId;
}
