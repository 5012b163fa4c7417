import { evaluateBadges } from './badges.js';
import type { LoyaltyEvent } from './events.js';
import { scheduleDigest } from './digest.js';
import type { Engagement, MemberState, OrderRecord } from './state.js';
import { DAY_MS } from './time.js';
import type { Mutable, Work } from './work.js';

/**
 * After an accepted event: the member's lifetime counters the reports take
 * their differences of (orders, revenue, orders with redeemed points,
 * returns, donations, the inactivity horizon), then badges, then the next
 * balance digest. O(1) per event but for a purchase's look for a redemption
 * naming its order (the member's kept redemptions, usually none) and a
 * return's look for its order.
 */

const NO_ENGAGEMENT: Engagement = Object.freeze({
  orders: 0,
  revenueMinor: 0,
  redeemedOrders: 0,
  redeemedRevenueMinor: 0,
  returns: 0,
  returnedMinor: 0,
  donations: 0,
  lastOrderMs: 0,
  inactiveAtMs: null,
});

export function engagementOf(state: MemberState): Engagement {
  return state.engagement ?? NO_ENGAGEMENT;
}

export function recordEngagement(work: Work, event: LoyaltyEvent): void {
  const before = work.state.engagement;
  // The copy is made on the first change (no closure for it: this runs for every event).
  let next: Mutable<Engagement> | null = null;
  if (event.type === 'purchase') {
    const engagement = (next = editable(before));
    engagement.orders += 1;
    engagement.revenueMinor += event.amountMinor;
    if (redeemedFor(work.state, event.orderId ?? event.id)) {
      engagement.redeemedOrders += 1;
      engagement.redeemedRevenueMinor += event.amountMinor;
    }
    engagement.lastOrderMs = Math.max(engagement.lastOrderMs, work.atMs);
  } else if (event.type === 'return') {
    const engagement = (next = editable(before));
    engagement.returns += 1;
    engagement.returnedMinor += returnedMinor(work, event.orderId);
  } else if (event.type === 'donation') {
    next = editable(before);
    next.donations += 1;
  }
  const days = work.program.program.reports?.inactiveAfterDays;
  const inactiveAtMs = days !== undefined && work.state.status === 'active' ? work.state.lastActivityMs + days * DAY_MS : null;
  if ((before?.inactiveAtMs ?? null) !== inactiveAtMs) {
    next ??= editable(before);
    next.inactiveAtMs = inactiveAtMs;
  }
  if (next !== null) {
    work.changed = true;
    work.state.engagement = next;
  }
  evaluateBadges(work, event);
  scheduleDigest(work);
}

/** A member's engagement copied for writing (the state's own is never changed). */
function editable(before: Engagement | undefined): Mutable<Engagement> {
  return { ...(before ?? NO_ENGAGEMENT) };
}

/** Whether one of the member's kept redemptions paid for this order (a redemption event with its orderId). */
function redeemedFor(state: MemberState, orderId: string): boolean {
  const redemptions = state.redemptions;
  for (let index = 0; index < redemptions.length; index++) if (redemptions[index]!.orderId === orderId) return true;
  return false;
}

/** The money a return gave back: the refunded amount, or the returned lines' value. */
function returnedMinor(work: Work, orderId: string): number {
  const after = findOrder(work.state.orders, orderId);
  const before = findOrder(work.original.orders, orderId);
  if (after === undefined || before === undefined) return 0;
  let value = after.refundedMinor - before.refundedMinor;
  for (let line = 0; line < after.lines.length && line < before.lines.length; line++) {
    const now = after.lines[line]!;
    const returned = now.returned - before.lines[line]!.returned;
    // valueMinor is quantity × unit price, so this division is exact.
    if (returned > 0) value += (now.valueMinor / now.quantity) * returned;
  }
  return value;
}

function findOrder(orders: readonly OrderRecord[], orderId: string): OrderRecord | undefined {
  for (let index = orders.length - 1; index >= 0; index--) if (orders[index]!.orderId === orderId) return orders[index];
  return undefined;
}
