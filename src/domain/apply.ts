import { applyActivity } from './activities.js';
import { applyAdjustment } from './adjustments.js';
import { assert } from './assert.js';
import { applyVoucherRedeem } from './benefits.js';
import { compiledOf, type CompiledProgram } from './compiled.js';
import { applyDonation } from './donations.js';
import { applyDue } from './due.js';
import { applyPurchase } from './earn.js';
import { recordEngagement } from './engagement.js';
import type { LoyaltyEvent } from './events.js';
import { applyEnroll, applyErase, applyUnenroll, membershipOutcome, newMember } from './membership.js';
import { applyMembershipCancel, applyMembershipFee, endPaidOnLeave } from './paid-membership.js';
import type { DomainPorts } from './ports.js';
import type { Program } from './program.js';
import { applyRedemption, applyRedemptionCancel } from './redemption.js';
import { rejection, type Rejection } from './rejection.js';
import { applyReturn } from './returns.js';
import type { Decision, MemberState } from './state.js';
import { balanceOutcomes, unchangedBalanceOutcome, finishDecision, startWork, type Work } from './work.js';

/**
 * The pure core: (state, event, program, event time) → decision. No I/O, no
 * clock: the event's own time drives every rule, so replaying the same events
 * gives the same state. The one port, global promotion budgets, is consulted
 * only once the event is accepted.
 *
 * Idempotency is the store's job: the actor records processed event ids in
 * the same transaction as the state and never applies an id twice.
 */
export function applyEvent(
  current: MemberState | undefined,
  event: LoyaltyEvent,
  occurredAtMs: number,
  program: Program | CompiledProgram,
  ports: DomainPorts,
): Decision {
  if (current !== undefined) assert(current.memberId === event.memberId, 'state belongs to another member');
  assert(Number.isSafeInteger(occurredAtMs), 'occurredAtMs must be a safe integer');
  const compiled = compiledOf(program);
  let state = current;
  let isNew = false;
  if (state === undefined) {
    const refused = refuseUnknown(compiled, event);
    if (refused !== null) return reject(undefined, event, occurredAtMs, refused);
    state = newMember(event.memberId, occurredAtMs, compiled);
    isNew = true;
  }
  const refused = refuseByStatus(state, event);
  if (refused !== null) return reject(current, event, occurredAtMs, refused);
  const work = startWork(compiled, state, event.id, occurredAtMs, ports);
  if (isNew && event.type !== 'enroll') membershipOutcome(work, 'enrolled');
  applyDue(work, occurredAtMs);
  const rejected = dispatch(work, event, isNew);
  if (rejected !== null) {
    assert(work.budgetUsage.length === 0, 'a rejected event must not take promotion budget');
    return reject(current, event, occurredAtMs, rejected);
  }
  // Report counters, badges and the next digest: after the event's own outcomes, before the balances.
  recordEngagement(work, event);
  work.state.eventCount += 1;
  balanceOutcomes(work);
  // Every accepted event gets at least one outcome, even one that moved no
  // balance (a purchase too small to earn a point): producers wait for it.
  if (work.outcomes.length === 0) unchangedBalanceOutcome(work);
  return finishDecision(work);
}

function refuseUnknown(program: CompiledProgram, event: LoyaltyEvent): Rejection | null {
  if (event.type === 'enroll') return null;
  if (event.type === 'unenroll' || event.type === 'erase') return rejection('UNKNOWN_MEMBER', `member ${event.memberId} is not enrolled`);
  if (!program.autoEnroll) {
    return rejection('UNKNOWN_MEMBER', `member ${event.memberId} is not enrolled and this program does not enroll automatically`);
  }
  return null;
}

function refuseByStatus(state: MemberState, event: LoyaltyEvent): Rejection | null {
  if (state.status === 'erased') return rejection('MEMBER_ERASED', `member ${state.memberId} was erased`);
  if (state.status === 'unenrolled' && event.type !== 'enroll' && event.type !== 'erase') {
    return rejection('MEMBER_NOT_ACTIVE', `member ${state.memberId} is unenrolled; enroll again first`);
  }
  return null;
}

function dispatch(work: Work, event: LoyaltyEvent, isNew: boolean): Rejection | null {
  switch (event.type) {
    case 'purchase':
      return applyPurchase(work, event);
    case 'return':
      return applyReturn(work, event);
    case 'redemption':
      return applyRedemption(work, event);
    case 'redemption_cancel':
      return applyRedemptionCancel(work, event);
    case 'activity':
      return applyActivity(work, event);
    case 'adjustment':
      return applyAdjustment(work, event);
    case 'voucher_redeem':
      return applyVoucherRedeem(work, event);
    case 'enroll':
      applyEnroll(work, event, isNew);
      return null;
    case 'unenroll':
      applyUnenroll(work);
      endPaidOnLeave(work);
      return null;
    case 'erase':
      applyErase(work);
      endPaidOnLeave(work);
      return null;
    case 'membership_fee':
      return applyMembershipFee(work, event);
    case 'membership_cancel':
      return applyMembershipCancel(work);
    case 'donation':
      return applyDonation(work, event);
  }
}

function reject(state: MemberState | undefined, event: LoyaltyEvent, occurredAtMs: number, refused: Rejection): Decision {
  return {
    state,
    ledger: [],
    outcomes: [
      { kind: 'rejected', eventId: event.id, memberId: event.memberId, code: refused.code, reason: refused.reason, occurredAtMs },
    ],
  };
}
