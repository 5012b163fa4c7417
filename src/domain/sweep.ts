import { compiledOf, type CompiledProgram } from './compiled.js';
import { digestDueMs, sendDigest } from './digest.js';
import { applyDue, settledEarliestVoucherExpiryMs } from './due.js';
import { inactivityDeadlineMs, notifyExpiring } from './expiry.js';
import { notifyRenewalDue, paidDueMs } from './paid-membership.js';
import type { Program } from './program.js';
import type { MemberState, SweepDecision } from './state.js';
import { balanceOutcomes, finishDecision, readCurrency, startWork } from './work.js';

/**
 * What a scheduled sweep does for one member at wall time `nowMs` (injected,
 * never read here): release pending points, expire lots and inactive
 * balances, run tier period ends and grace deadlines, prune closed orders,
 * and tell the member about points expiring soon. When nothing was due the
 * decision carries the very same state object, so the engine can skip the write.
 */
export function sweepMember(state: MemberState, nowMs: number, program: Program | CompiledProgram): SweepDecision {
  const compiled = compiledOf(program);
  const work = startWork(compiled, state, sweepEventId(state.memberId, nowMs), nowMs, null);
  applyDue(work, nowMs);
  if (state.status !== 'erased') notifyExpiring(work, nowMs);
  if (state.paid !== undefined) notifyRenewalDue(work, nowMs);
  sendDigest(work, nowMs);
  if (!work.changed) return { state, ledger: [], outcomes: [] };
  balanceOutcomes(work);
  return finishDecision(work) as SweepDecision;
}

/** The synthetic cause of a sweep's ledger entries and outcomes: deterministic, so a replayed sweep matches. */
export function sweepEventId(memberId: string, nowMs: number): string {
  return `sweep:${memberId}:${nowMs}`;
}

/**
 * The earliest wall time at which a sweep would change this member, or null
 * when nothing is scheduled. The engine may use it to sweep only members with
 * something due (a timer wheel or an index by due time) instead of everyone.
 */
export function nextDueMs(state: MemberState, program: Program | CompiledProgram): number | null {
  const compiled = compiledOf(program);
  let next = Number.POSITIVE_INFINITY;
  for (const currencyId in state.currencies) {
    const currency = readCurrency(state, currencyId);
    next = earlier(next, currency.pendingLots[0]?.releaseAtMs);
    next = earlier(next, currency.lots[0]?.expiresAtMs);
    if (currency.lots.length > 0) next = earlier(next, inactivityDeadlineMs(compiled, currencyId, state.lastActivityMs));
    const horizonMs = compiled.currencyById.get(currencyId)?.expiringSoonMs ?? null;
    if (horizonMs !== null) {
      const deadline = inactivityDeadlineMs(compiled, currencyId, state.lastActivityMs);
      const nextExpiry = deadline ?? currency.lots.find((lot) => lot.expiresAtMs !== null && lot.expiresAtMs > currency.noticeThroughMs)?.expiresAtMs;
      if (nextExpiry !== null && nextExpiry !== undefined && nextExpiry > currency.noticeThroughMs && currency.spendable > 0) {
        next = earlier(next, nextExpiry - horizonMs);
      }
    }
  }
  // A period end is due even for an idle member: it moves the review date (one write per period).
  next = earlier(next, state.tierReviewAtMs);
  next = earlier(next, state.tierGrace?.untilMs);
  next = earlier(next, state.orders[0]?.closesAtMs);
  next = earlier(next, state.redemptions[0]?.cancelUntilMs);
  // A decided state's list: its earliest expiry is cached for long lists.
  next = earlier(next, settledEarliestVoucherExpiryMs(state.vouchers));
  for (const promotionId in state.promotionUsage) {
    next = earlier(next, compiled.promotions.find((promotion) => promotion.id === promotionId)?.endsAtMs ?? 0);
  }
  if (state.paid !== undefined) next = earlier(next, paidDueMs(compiled, state));
  next = earlier(next, digestDueMs(compiled, state));
  return next === Number.POSITIVE_INFINITY ? null : next;
}

/** The earlier of a running minimum and a time that may be absent (a plain function: nextDueMs runs for every member write). */
function earlier(next: number, atMs: number | null | undefined): number {
  return atMs !== null && atMs !== undefined && atMs < next ? atMs : next;
}
