import { expireDueLots, expireInactive, releaseDuePending } from './expiry.js';
import { applyPaidDue } from './paid-membership.js';
import { pruneEndedPromotionUsage } from './promotions.js';
import type { MemberState, VoucherRecord } from './state.js';
import { applyTierReviews } from './tiers.js';
import { dropListHead, listCopied, writeList, type Work } from './work.js';

/**
 * Everything that becomes due with time, applied in a fixed order at `atMs`:
 * before each event (at the event's time) and by the sweep (at wall time).
 * Each step first checks the head of a sorted list, so a member with nothing
 * due costs a handful of comparisons: one pass over the currencies decides
 * whether pending points or lots are due at all, and inactivity deadlines are
 * only computed when the program has an inactivity expiry.
 */
export function applyDue(work: Work, atMs: number): void {
  // Releasing can create lots already past their expiry, so both steps run when either head is due.
  if (currencyHeadsDue(work.state, atMs)) {
    releaseDuePending(work, atMs);
    expireDueLots(work, atMs);
  }
  if (work.program.hasInactivityExpiry) expireInactive(work, atMs);
  // A paid plan that lapsed meanwhile: the tier reviews before its lapse (which still see the plan's tier
  // floor), the lapse, then the reviews after it, in time order.
  const paid = work.state.paid;
  if (paid !== undefined && paid.status === 'active' && paid.graceEndsAtMs <= atMs) {
    applyTierReviews(work, paid.graceEndsAtMs);
    applyPaidDue(work, atMs);
  }
  applyTierReviews(work, atMs);
  pruneClosed(work, atMs);
}

/** Whether any currency has pending points to release or a dated lot to expire at `atMs`. */
function currencyHeadsDue(state: MemberState, atMs: number): boolean {
  const currencies = state.currencies;
  for (const currencyId in currencies) {
    // An inherited key reads as an empty currency (readCurrency): nothing due.
    if (!Object.hasOwn(currencies, currencyId)) continue;
    const currency = currencies[currencyId]!;
    const pendingLots = currency.pendingLots;
    if (pendingLots.length > 0 && pendingLots[0]!.releaseAtMs <= atMs) return true;
    const first = currency.lots[0];
    if (first !== undefined && first.expiresAtMs !== null && first.expiresAtMs <= atMs) return true;
  }
  return false;
}

/** Drops what can no longer be used: closed orders, cancel windows, expired vouchers, ended promotions. */
function pruneClosed(work: Work, atMs: number): void {
  const state = work.state;
  const orders = state.orders;
  if (orders.length > 0 && orders[0]!.closesAtMs <= atMs) {
    let closed = 1;
    while (closed < orders.length && orders[closed]!.closesAtMs <= atMs) closed += 1;
    dropListHead(work, 'orders', closed);
  }
  const redemptions = state.redemptions;
  if (redemptions.length > 0 && redemptions[0]!.cancelUntilMs <= atMs) {
    let closed = 1;
    while (closed < redemptions.length && redemptions[closed]!.cancelUntilMs <= atMs) closed += 1;
    dropListHead(work, 'redemptions', closed);
  }
  if (anyVoucherExpired(state.vouchers, atMs, !listCopied(work, 'vouchers'))) {
    const current = state.vouchers;
    const kept: VoucherRecord[] = [];
    for (let index = 0; index < current.length; index++) if (current[index]!.expiresAtMs > atMs) kept.push(current[index]!);
    const vouchers = writeList(work, 'vouchers');
    vouchers.length = 0;
    for (let index = 0; index < kept.length; index++) vouchers.push(kept[index]!);
  }
  // Does nothing (and copies nothing) unless a promotion in use has ended.
  pruneEndedPromotionUsage(work, atMs);
}

/**
 * The earliest expiry of a voucher list no work can change any more (one of
 * a state's, not a work's own copy): members keep up to `vouchersMax` (500)
 * vouchers, and every event (and every member write's due time) would
 * otherwise walk them all.
 */
const earliestVoucherExpiry = new WeakMap<readonly VoucherRecord[], number>();
/** Below this many vouchers a walk is cheaper than the cache. */
const VOUCHER_CACHE_MIN = 8;

function anyVoucherExpired(vouchers: readonly VoucherRecord[], atMs: number, settled: boolean): boolean {
  if (!settled || vouchers.length < VOUCHER_CACHE_MIN) {
    for (let index = 0; index < vouchers.length; index++) if (vouchers[index]!.expiresAtMs <= atMs) return true;
    return false;
  }
  return settledEarliestVoucherExpiryMs(vouchers) <= atMs;
}

/**
 * The earliest expiry of a settled voucher list (a decided state's: never a
 * work's copy in progress, which may still change); Infinity when empty.
 */
export function settledEarliestVoucherExpiryMs(vouchers: readonly VoucherRecord[]): number {
  let earliest = vouchers.length < VOUCHER_CACHE_MIN ? undefined : earliestVoucherExpiry.get(vouchers);
  if (earliest === undefined) {
    earliest = Infinity;
    for (let index = 0; index < vouchers.length; index++) earliest = Math.min(earliest, vouchers[index]!.expiresAtMs);
    if (vouchers.length >= VOUCHER_CACHE_MIN) earliestVoucherExpiry.set(vouchers, earliest);
  }
  return earliest;
}
