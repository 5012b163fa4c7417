import { expireDueLots, expireInactive, releaseDuePending } from './expiry.js';
import { pruneEndedPromotionUsage } from './promotions.js';
import { applyTierReviews } from './tiers.js';
import { writeList, type Work } from './work.js';

/**
 * Everything that becomes due with time, applied in a fixed order at `atMs`:
 * before each event (at the event's time) and by the sweep (at wall time).
 * Each step first checks the head of a sorted list, so a member with nothing
 * due costs a handful of comparisons.
 */
export function applyDue(work: Work, atMs: number): void {
  releaseDuePending(work, atMs);
  expireDueLots(work, atMs);
  expireInactive(work, atMs);
  applyTierReviews(work, atMs);
  pruneClosed(work, atMs);
}

/** Drops what can no longer be used: closed orders, cancel windows, expired vouchers, ended promotions. */
function pruneClosed(work: Work, atMs: number): void {
  const state = work.state;
  if (state.orders.length > 0 && state.orders[0]!.closesAtMs <= atMs) {
    const orders = writeList(work, 'orders');
    while (orders.length > 0 && orders[0]!.closesAtMs <= atMs) orders.shift();
  }
  if (state.redemptions.length > 0 && state.redemptions[0]!.cancelUntilMs <= atMs) {
    const redemptions = writeList(work, 'redemptions');
    while (redemptions.length > 0 && redemptions[0]!.cancelUntilMs <= atMs) redemptions.shift();
  }
  if (state.vouchers.some((voucher) => voucher.expiresAtMs <= atMs)) {
    const kept = state.vouchers.filter((voucher) => voucher.expiresAtMs > atMs);
    const vouchers = writeList(work, 'vouchers');
    vouchers.length = 0;
    vouchers.push(...kept);
  }
  let hasUsage = false;
  for (const _ in state.promotionUsage) {
    hasUsage = true;
    break;
  }
  if (hasUsage) pruneEndedPromotionUsage(work, atMs);
}
