import { BUILTIN_RULE } from './compiled.js';
import type { RedemptionCancelEvent, RedemptionEvent } from './events.js';
import { expireDueLots } from './expiry.js';
import { creditSpendable, debitSpendable } from './lots.js';
import { rejection, type Rejection } from './rejection.js';
import { tierOf } from './tiers.js';
import type { RedemptionRecord } from './state.js';
import { appendToList, readCurrency, writeList, type Work } from './work.js';

/**
 * Redemption debits spendable points (soonest-expiring lots first) for a
 * reward. It never touches qualifying points, so it never lowers a tier. A
 * cancel inside the cancel window puts the very same lots back, with their
 * original expiry.
 */

export function applyRedemption(work: Work, event: RedemptionEvent): Rejection | null {
  const program = work.program;
  if (!program.currencyById.has(event.currency)) return rejection('UNKNOWN_CURRENCY', `this program has no points currency ${event.currency}`);
  const refused = checkReward(work, event);
  if (refused !== null) return refused;
  const currency = readCurrency(work.state, event.currency);
  if (currency.spendable < event.points) {
    const pending = currency.pending > 0 ? ` (${currency.pending} more are pending)` : '';
    return rejection(
      'INSUFFICIENT_POINTS',
      `reward ${event.rewardId} needs ${event.points} ${event.currency}; the member has ${Math.max(0, currency.spendable)} spendable${pending}`,
    );
  }
  const details = { reference: event.rewardId };
  const lots = debitSpendable(work, event.currency, event.points, 'redeem', BUILTIN_RULE.redemption, details);
  if (program.redemptionCancelMs > 0) {
    const redemptions = appendToList(work, 'redemptions', {
      eventId: event.id,
      rewardId: event.rewardId,
      currency: event.currency,
      points: event.points,
      atMs: work.atMs,
      cancelUntilMs: work.atMs + program.redemptionCancelMs,
      lots,
      // The order the points paid for: that purchase then counts as one with redeemed points (reports).
      ...(event.orderId !== undefined ? { orderId: event.orderId } : {}),
    });
    // Kept sorted by deadline for pruning; bounded by the program maximum.
    sortLastByDeadline(redemptions);
    if (redemptions.length > program.redemptionsMax) redemptions.splice(0, redemptions.length - program.redemptionsMax);
  }
  work.state.lastActivityMs = Math.max(work.state.lastActivityMs, work.atMs);
  work.outcomes.push({
    kind: 'redemption',
    eventId: work.eventId,
    memberId: work.state.memberId,
    occurredAtMs: work.atMs,
    redemptionId: event.id,
    status: 'redeemed',
    rewardId: event.rewardId,
    currency: event.currency,
    points: event.points,
  });
  return null;
}

const byDeadline = (left: RedemptionRecord, right: RedemptionRecord): number => left.cancelUntilMs - right.cancelUntilMs;

/**
 * `list.sort(byDeadline)` for a list sorted but for its last item, which a
 * stable sort moves back past the later deadlines and no further: done by
 * that one move. Any other list (out of order, or a deadline that is not a
 * finite number) is sorted by the sort itself.
 */
export function sortLastByDeadline(list: RedemptionRecord[]): void {
  const last = list.length - 1;
  if (last < 1) return;
  for (let index = 0; index <= last; index++) {
    const deadline = list[index]!.cancelUntilMs;
    if (!Number.isFinite(deadline) || (index > 0 && index < last && list[index - 1]!.cancelUntilMs > deadline)) {
      list.sort(byDeadline);
      return;
    }
  }
  const item = list[last]!;
  let position = last;
  while (position > 0 && list[position - 1]!.cancelUntilMs > item.cancelUntilMs) {
    list[position] = list[position - 1]!;
    position -= 1;
  }
  list[position] = item;
}

/** With a catalog: the reward must exist, cost what it costs, in its currency, for an allowed tier. */
function checkReward(work: Work, event: RedemptionEvent): Rejection | null {
  const rewards = work.program.rewards;
  if (rewards === null) return null;
  const reward = rewards.get(event.rewardId);
  if (reward === undefined) return rejection('REWARD_UNKNOWN', `reward ${event.rewardId} is not in the catalog`);
  const currency = reward.currency ?? work.program.earn.currency;
  if (reward.points !== event.points || currency !== event.currency) {
    return rejection('REWARD_PRICE_MISMATCH', `reward ${reward.id} costs ${reward.points} ${currency}, not ${event.points} ${event.currency}`);
  }
  if (reward.tiers !== undefined && !reward.tiers.includes(work.state.tierId)) {
    const tier = tierOf(work.program, work.state.tierId);
    return rejection('REWARD_NOT_ALLOWED', `reward ${reward.id} is for tiers ${reward.tiers.join(', ')}; the member is ${tier.name}`);
  }
  return null;
}

export function applyRedemptionCancel(work: Work, event: RedemptionCancelEvent): Rejection | null {
  const index = work.state.redemptions.findIndex((record) => record.eventId === event.redemptionId);
  const record = work.state.redemptions[index];
  if (record === undefined) {
    return rejection('REDEMPTION_NOT_FOUND', `redemption ${event.redemptionId} is unknown, already cancelled, or past its cancel window`);
  }
  writeList(work, 'redemptions').splice(index, 1);
  const details = { reference: record.eventId };
  for (const lot of record.lots) {
    creditSpendable(work, record.currency, lot.points, lot.expiresAtMs, 'redeem_cancel', BUILTIN_RULE.redemption, details);
  }
  // A lot whose date passed while it was spent comes back expired, as it would have.
  expireDueLots(work, work.atMs);
  work.outcomes.push({
    kind: 'redemption',
    eventId: work.eventId,
    memberId: work.state.memberId,
    occurredAtMs: work.atMs,
    redemptionId: record.eventId,
    status: 'cancelled',
    rewardId: record.rewardId,
    currency: record.currency,
    points: record.points,
  });
  return null;
}
