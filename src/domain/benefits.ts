import type { VoucherRedeemEvent } from './events.js';
import { voucherCode } from './hash.js';
import type { Benefit, Challenge } from './program.js';
import type { Rejection } from './rejection.js';
import { rejection } from './rejection.js';
import type { VoucherRecord } from './state.js';
import { DAY_MS } from './time.js';
import { appendToList, readCurrency, writeList, writeRecord, type Work } from './work.js';

/**
 * Benefits: vouchers and entitlements issued when a member reaches a tier, a
 * points milestone, or completes a challenge. Codes are derived from
 * (member, event, benefit) so a replay issues the same codes.
 */

/**
 * Issues a benefit unless its trigger was already rewarded: tier, milestone
 * and badge benefits once per member; challenge benefits once per completion
 * (a non-repeatable challenge completes once); paid membership benefits once
 * per term.
 */
export function issueBenefit(work: Work, benefit: Benefit, reason: string): void {
  const issued = Object.hasOwn(work.state.benefitsIssued, benefit.id) ? work.state.benefitsIssued[benefit.id]! : 0;
  const repeatable = benefit.trigger.kind === 'challenge_completed' || benefit.trigger.kind === 'paid_term_started';
  if (!repeatable && issued > 0) return;
  writeRecord(work, 'benefitsIssued')[benefit.id] = issued + 1;
  const code = voucherCode(benefit.issue.codePrefix, work.state.memberId, work.eventId, benefit.id);
  const expiresAtMs = work.atMs + benefit.issue.validDays * DAY_MS;
  const vouchers = appendToList(work, 'vouchers', {
    code,
    benefitId: benefit.id,
    kind: benefit.issue.kind,
    issuedAtMs: work.atMs,
    expiresAtMs,
    redeemedAtMs: null,
  });
  trimVouchers(vouchers, work.program.vouchersMax);
  work.outcomes.push({
    kind: 'benefit',
    eventId: work.eventId,
    memberId: work.state.memberId,
    occurredAtMs: work.atMs,
    benefitId: benefit.id,
    benefitKind: benefit.issue.kind,
    code,
    expiresAtMs,
    reason,
  });
}

/** Keeps the voucher list bounded: redeemed ones go first, then the oldest. */
function trimVouchers(vouchers: VoucherRecord[], max: number): void {
  while (vouchers.length > max) {
    let redeemed = 0;
    while (redeemed < vouchers.length && vouchers[redeemed]!.redeemedAtMs === null) redeemed += 1;
    vouchers.splice(redeemed < vouchers.length ? redeemed : 0, 1);
  }
}

/** After lifetime earnings of a currency grew: issue the milestones now reached. */
export function checkMilestones(work: Work, currencyId: string): void {
  const earned = readCurrency(work.state, currencyId).lifetimeEarned;
  for (const benefit of work.program.milestoneBenefits) {
    const trigger = benefit.trigger;
    if (trigger.kind !== 'points_milestone') continue;
    if ((trigger.currency ?? work.program.earn.currency) !== currencyId || earned < trigger.points) continue;
    issueBenefit(work, benefit, `earned ${earned} ${currencyId} in total (milestone ${trigger.points})`);
  }
}

/** Counts a purchase toward every challenge; a challenge completes when enough fall inside its window. */
export function recordPurchaseForChallenges(work: Work, amountMinor: number): void {
  for (const challenge of work.program.challenges) {
    if (amountMinor < challenge.minAmountMinor) continue;
    advanceChallenge(work, challenge);
  }
}

const NO_TIMES: readonly number[] = Object.freeze([]);

function advanceChallenge(work: Work, challenge: Challenge): void {
  const progress = Object.hasOwn(work.state.challenges, challenge.id) ? work.state.challenges[challenge.id]! : undefined;
  if (progress !== undefined && progress.completions > 0 && !challenge.repeatable) return;
  const windowStartMs = work.atMs - challenge.withinDays * DAY_MS;
  const timesMs: number[] = [];
  const previous = progress?.timesMs ?? NO_TIMES;
  for (let index = 0; index < previous.length; index++) if (previous[index]! > windowStartMs) timesMs.push(previous[index]!);
  timesMs.push(work.atMs);
  const completions = progress?.completions ?? 0;
  const records = writeRecord(work, 'challenges');
  if (timesMs.length < challenge.count) {
    records[challenge.id] = { timesMs, completions };
    return;
  }
  records[challenge.id] = { timesMs: [], completions: completions + 1 };
  for (const benefit of work.program.benefitsByChallenge.get(challenge.id) ?? []) {
    issueBenefit(work, benefit, `completed challenge ${challenge.name}`);
  }
}

export function applyVoucherRedeem(work: Work, event: VoucherRedeemEvent): Rejection | null {
  const index = work.state.vouchers.findIndex((voucher) => voucher.code === event.code);
  const voucher = work.state.vouchers[index];
  if (voucher === undefined) return rejection('VOUCHER_UNKNOWN', `voucher ${event.code} is not one of this member's vouchers (or it expired)`);
  if (voucher.kind !== 'voucher') return rejection('VOUCHER_NOT_REDEEMABLE', `${event.code} is a ${voucher.kind} entitlement, not a voucher to redeem`);
  if (voucher.redeemedAtMs !== null) {
    return rejection('VOUCHER_ALREADY_REDEEMED', `voucher ${event.code} was already redeemed at ${new Date(voucher.redeemedAtMs).toISOString()}`);
  }
  if (voucher.expiresAtMs <= work.atMs) return rejection('VOUCHER_EXPIRED', `voucher ${event.code} expired at ${new Date(voucher.expiresAtMs).toISOString()}`);
  writeList(work, 'vouchers')[index] = { ...voucher, redeemedAtMs: work.atMs };
  work.state.lastActivityMs = Math.max(work.state.lastActivityMs, work.atMs);
  work.outcomes.push({
    kind: 'voucher_redeemed',
    eventId: work.eventId,
    memberId: work.state.memberId,
    occurredAtMs: work.atMs,
    code: voucher.code,
    benefitId: voucher.benefitId,
  });
  return null;
}
