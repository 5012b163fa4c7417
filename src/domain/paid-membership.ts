import { assert } from './assert.js';
import { issueBenefit } from './benefits.js';
import type { CompiledProgram, RuleRef } from './compiled.js';
import type { MembershipFeeEvent } from './events.js';
import { paidActiveAt, plansOf } from './paid-floor.js';
import type { Benefit, PaidPlan } from './program.js';
import { rejection, type Rejection } from './rejection.js';
import type { PaidMembership, PaidMembershipOutcome } from './state.js';
import { tierMeasure } from './tier-measure.js';
import { changeTier, supportedTier, tierOf } from './tiers.js';
import { addMonthsMs, DAY_MS } from './time.js';
import type { Mutable, Work } from './work.js';

/**
 * Paid membership (a hybrid program: CVS CarePass, B&N Membership): a fee
 * buys a term of a plan on top of the free program. A `membership_fee` of
 * the plan's price joins (or, for another plan, switches: the new term starts
 * now), or renews the active plan (the new term starts where the old one
 * ends). Without a renewal the plan lapses at the end of the term plus its
 * grace days; `membership_cancel` ends it at once, and so do unenroll and
 * erase. While active, the plan adds its earn multiplier (`earn:paid:<id>`),
 * holds the member at least at its tier, and issues its `paid_term_started`
 * benefits once per term. When it ends, a member the plan had lifted drops
 * to the higher of the tier they held before and the tier their qualifying
 * measure supports.
 */

interface CompiledPaid {
  readonly earnRules: ReadonlyMap<string, RuleRef>;
  readonly benefits: ReadonlyMap<string, readonly Benefit[]>;
}

const compiledCache = new WeakMap<CompiledProgram, CompiledPaid>();

function compiledPaid(program: CompiledProgram): CompiledPaid {
  let compiled = compiledCache.get(program);
  if (compiled === undefined) {
    const earnRules = new Map<string, RuleRef>();
    const benefits = new Map<string, Benefit[]>();
    for (const plan of program.program.paidMemberships) {
      earnRules.set(plan.id, { id: `earn:paid:${plan.id}`, promotionId: null, currency: program.earn.currency, qualifying: plan.qualifying });
      benefits.set(plan.id, []);
    }
    for (const benefit of program.program.benefits) {
      if (benefit.trigger.kind === 'paid_term_started') benefits.get(benefit.trigger.planId)?.push(benefit);
    }
    compiled = { earnRules, benefits };
    compiledCache.set(program, compiled);
  }
  return compiled;
}

/** The paid plan's extra earn on a purchase at the work's time: its rule and multiplier; null when none applies. */
export function paidEarn(work: Work): { readonly rule: RuleRef; readonly percent: number } | null {
  const paid = work.state.paid;
  if (paid === undefined || !paidActiveAt(work.state, work.atMs)) return null;
  const plan = plansOf(work.program).get(paid.planId);
  if (plan === undefined || plan.earnMultiplierPercent <= 100) return null;
  return { rule: compiledPaid(work.program).earnRules.get(plan.id)!, percent: plan.earnMultiplierPercent };
}

function outcome(work: Work, paid: PaidMembership, action: PaidMembershipOutcome['action'], atMs: number, fromPlanId?: string): void {
  const item: Mutable<PaidMembershipOutcome> = {
    kind: 'paid_membership',
    eventId: work.eventId,
    memberId: work.state.memberId,
    occurredAtMs: atMs,
    planId: paid.planId,
    action,
    termEndsAtMs: paid.termEndsAtMs,
    graceEndsAtMs: paid.graceEndsAtMs,
  };
  if (fromPlanId !== undefined) item.fromPlanId = fromPlanId;
  work.outcomes.push(item);
}

function planName(program: CompiledProgram, planId: string): string {
  return plansOf(program).get(planId)?.name ?? planId;
}

export function applyMembershipFee(work: Work, event: MembershipFeeEvent): Rejection | null {
  const program = work.program;
  const plan = plansOf(program).get(event.planId);
  if (plan === undefined) return rejection('PLAN_UNKNOWN', `this program has no paid membership plan ${event.planId}`);
  if (event.currency !== program.program.currency) {
    return rejection('CURRENCY_NOT_ACCEPTED', `the program accepts ${program.program.currency}, not ${event.currency}`);
  }
  if (event.amountMinor !== plan.feeMinor) {
    return rejection('FEE_MISMATCH', `plan ${plan.id} costs ${plan.feeMinor} minor units of ${program.program.currency}, not ${event.amountMinor}`);
  }
  const atMs = work.atMs;
  const offset = program.offsetMinutes;
  const current = work.state.paid;
  // The due step before the event already ended a plan past its grace.
  const active = current !== undefined && current.status === 'active';
  const fees = (current?.fees ?? 0) + 1;
  const feesMinor = (current?.feesMinor ?? 0) + event.amountMinor;
  const floorTierId = plan.tierId ?? null;
  let next: PaidMembership;
  let action: PaidMembershipOutcome['action'];
  if (active && current.planId === plan.id) {
    // At most one term paid ahead: a second fee for the same term is most likely a double charge.
    if (current.termEndsAtMs > addMonthsMs(atMs, plan.termMonths, offset)) {
      return rejection('RENEWAL_TOO_EARLY', `plan ${plan.id} is already paid until ${new Date(current.termEndsAtMs).toISOString()}, more than one term ahead`);
    }
    // The new term starts where the old one ends, also for a renewal in the grace days: no gap.
    const termStartMs = current.termEndsAtMs;
    const termEndsAtMs = addMonthsMs(termStartMs, plan.termMonths, offset);
    next = { ...current, termStartMs, termEndsAtMs, graceEndsAtMs: termEndsAtMs + plan.graceDays * DAY_MS, floorTierId, fees, feesMinor, noticeForEndsAtMs: 0 };
    action = 'renewed';
  } else {
    const termEndsAtMs = addMonthsMs(atMs, plan.termMonths, offset);
    next = {
      planId: plan.id,
      status: 'active',
      sinceMs: atMs,
      termStartMs: atMs,
      termEndsAtMs,
      graceEndsAtMs: termEndsAtMs + plan.graceDays * DAY_MS,
      endedAtMs: null,
      floorTierId,
      baseTierId: active ? current.baseTierId : null,
      fees,
      feesMinor,
      noticeForEndsAtMs: 0,
    };
    action = active ? 'switched' : 'joined';
  }
  work.changed = true;
  work.state.paid = next;
  work.state.lastActivityMs = Math.max(work.state.lastActivityMs, atMs);
  outcome(work, next, action, atMs, action === 'switched' ? current!.planId : undefined);
  if (action === 'switched') releaseFloor(work, current!, `switched from paid membership ${planName(program, current!.planId)}`, atMs);
  raiseToFloor(work, plan);
  for (const benefit of compiledPaid(program).benefits.get(plan.id) ?? []) issueBenefit(work, benefit, `paid membership ${plan.name}, term until ${new Date(next.termEndsAtMs).toISOString()}`);
  return null;
}

/** Lifts the member to the plan's tier if below it, remembering the tier they came from. */
function raiseToFloor(work: Work, plan: PaidPlan): void {
  if (plan.tierId === undefined) return;
  const program = work.program;
  const floor = program.tierById.get(plan.tierId);
  assert(floor !== undefined, 'a plan tier is a program tier (validated)');
  const current = tierOf(program, work.state.tierId);
  if (current.index >= floor.index) return;
  const paid = work.state.paid!;
  if (paid.baseTierId === null) work.state.paid = { ...paid, baseTierId: current.id };
  changeTier(work, current, floor, `paid membership ${plan.name}`, work.atMs);
  for (let index = current.index + 1; index <= floor.index; index++) {
    for (const benefit of program.benefitsByTier.get(program.tiers[index]!.id) ?? []) issueBenefit(work, benefit, `reached tier ${program.tiers[index]!.name}`);
  }
}

/**
 * After a plan ended (or was switched away from): a member it had lifted and
 * who is still at or below its tier drops to the higher of the tier held
 * before and the tier the measure supports, never below the new plan's tier.
 */
function releaseFloor(work: Work, ended: PaidMembership, reason: string, atMs: number): void {
  if (ended.floorTierId === null || ended.baseTierId === null || work.state.status !== 'active') return;
  const program = work.program;
  const current = tierOf(program, work.state.tierId);
  const floor = program.tierById.get(ended.floorTierId);
  if (floor === undefined || current.index > floor.index) return;
  let landing = supportedTier(program, tierMeasure(work.state));
  const base = tierOf(program, ended.baseTierId);
  if (base.index > landing.index) landing = base;
  const stillPaid = work.state.paid;
  if (stillPaid !== undefined && stillPaid !== ended && stillPaid.status === 'active' && stillPaid.floorTierId !== null) {
    const newFloor = program.tierById.get(stillPaid.floorTierId);
    if (newFloor !== undefined && newFloor.index > landing.index) landing = newFloor;
    if (newFloor !== undefined && newFloor.index > base.index) work.state.paid = { ...stillPaid, baseTierId: base.id };
  }
  if (landing.index < current.index) changeTier(work, current, landing, reason, atMs);
}

function endPaid(work: Work, status: 'lapsed' | 'cancelled', atMs: number): PaidMembership {
  const paid = work.state.paid!;
  const ended: PaidMembership = { ...paid, status, endedAtMs: atMs };
  work.changed = true;
  work.state.paid = ended;
  outcome(work, ended, status, atMs);
  return paid;
}

export function applyMembershipCancel(work: Work): Rejection | null {
  const paid = work.state.paid;
  if (paid === undefined || paid.status !== 'active') return rejection('PAID_MEMBERSHIP_NOT_ACTIVE', 'the member has no active paid membership');
  const before = endPaid(work, 'cancelled', work.atMs);
  releaseFloor(work, before, `paid membership ${planName(work.program, before.planId)} cancelled`, work.atMs);
  return null;
}

/** Unenroll and erase end an active paid membership (the tier follows the unenroll policy, not the plan). */
export function endPaidOnLeave(work: Work): void {
  if (work.state.paid?.status === 'active') endPaid(work, 'cancelled', work.atMs);
}

/** Due with time: a plan not renewed by the end of its grace lapses then. */
export function applyPaidDue(work: Work, atMs: number): void {
  const paid = work.state.paid;
  if (paid === undefined || paid.status !== 'active' || paid.graceEndsAtMs > atMs) return;
  const before = endPaid(work, 'lapsed', paid.graceEndsAtMs);
  releaseFloor(work, before, `paid membership ${planName(work.program, before.planId)} lapsed`, paid.graceEndsAtMs);
}

/** Sweep only: tells the member their term ends within the plan's renewalNoticeDays, once per term end. */
export function notifyRenewalDue(work: Work, nowMs: number): void {
  const paid = work.state.paid;
  if (paid === undefined || paid.status !== 'active' || paid.noticeForEndsAtMs === paid.termEndsAtMs || work.state.status !== 'active') return;
  const noticeAtMs = renewalNoticeAtMs(work.program, paid);
  if (noticeAtMs === null || noticeAtMs > nowMs) return;
  work.changed = true;
  const noticed = { ...paid, noticeForEndsAtMs: paid.termEndsAtMs };
  work.state.paid = noticed;
  outcome(work, noticed, 'renewal_due', nowMs);
}

function renewalNoticeAtMs(program: CompiledProgram, paid: PaidMembership): number | null {
  const days = plansOf(program).get(paid.planId)?.renewalNoticeDays;
  return days === undefined ? null : paid.termEndsAtMs - days * DAY_MS;
}

/** When the sweep next has paid membership work for this member (a renewal notice, a lapse); null: none. */
export function paidDueMs(program: CompiledProgram, state: { readonly paid?: PaidMembership; readonly status: string }): number | null {
  const paid = state.paid;
  if (paid === undefined || paid.status !== 'active') return null;
  if (paid.noticeForEndsAtMs !== paid.termEndsAtMs && state.status === 'active') {
    const noticeAtMs = renewalNoticeAtMs(program, paid);
    if (noticeAtMs !== null && noticeAtMs < paid.graceEndsAtMs) return noticeAtMs;
  }
  return paid.graceEndsAtMs;
}
