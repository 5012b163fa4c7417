import type { CompiledPromotion, CompiledProgram, CompiledScope } from './compiled.js';
import type { PurchaseEvent } from './events.js';
import type { MemberState } from './state.js';
import { writeRecord, type Work } from './work.js';

/**
 * Promotions: time-windowed earn rules for eligible members, with per-member
 * budgets (kept in member state) and global budgets (taken through the
 * BudgetPort, shared by every actor thread, so they are never overspent).
 */

/** Whether the order as a whole meets a scope's channel, partner and basket conditions. */
export function orderConditionsHold(scope: CompiledScope, event: PurchaseEvent): boolean {
  if (scope.channels !== null && (event.channel === undefined || !scope.channels.has(event.channel))) return false;
  if (scope.partners !== null && (event.partner === undefined || !scope.partners.has(event.partner))) return false;
  return event.amountMinor >= scope.minBasketMinor;
}

export function isEligible(promotion: CompiledPromotion, state: MemberState): boolean {
  if (promotion.tiers !== null && !promotion.tiers.has(state.tierId)) return false;
  if (promotion.segments !== null && !state.segments.some((segment) => promotion.segments!.has(segment))) return false;
  if (promotion.attributes !== null) {
    for (const key in promotion.attributes) {
      if (!Object.hasOwn(state.attributes, key) || state.attributes[key] !== promotion.attributes[key]) return false;
    }
  }
  return true;
}

/** Promotions running at `atMs` that this member and this order qualify for, in program order. */
export function applicablePromotions(program: CompiledProgram, state: MemberState, event: PurchaseEvent, atMs: number): CompiledPromotion[] {
  const found: CompiledPromotion[] = [];
  for (const promotion of program.promotions) {
    if (atMs < promotion.startsAtMs || atMs >= promotion.endsAtMs) continue;
    if (!isEligible(promotion, state) || !orderConditionsHold(promotion.scope, event)) continue;
    found.push(promotion);
  }
  return found;
}

/**
 * How many of `wanted` points the budgets allow, taking them: the member's
 * own budget first (free to check, and it spares the shared counters), then
 * the global one. Records per-member usage in state and global usage in the
 * decision. 0 means the promotion gives nothing to this order.
 */
export function takeBudget(work: Work, promotion: CompiledPromotion, wanted: number): number {
  if (wanted <= 0) return 0;
  const usage = Object.hasOwn(work.state.promotionUsage, promotion.id) ? work.state.promotionUsage[promotion.id]! : { points: 0, uses: 0 };
  let granted = wanted;
  const perMember = promotion.perMember;
  if (perMember !== null) {
    if (perMember.uses !== undefined && usage.uses >= perMember.uses) return 0;
    if (perMember.points !== undefined) granted = Math.min(granted, perMember.points - usage.points);
    if (granted <= 0) return 0;
  }
  if (promotion.global !== null) {
    if (work.ports === null) return 0;
    granted = work.ports.budgets.tryConsume(promotion.id, granted);
    if (granted <= 0) return 0;
    work.budgetUsage.push({ promotionId: promotion.id, points: granted, uses: 1 });
  }
  if (perMember !== null) writeRecord(work, 'promotionUsage')[promotion.id] = { points: usage.points + granted, uses: usage.uses + 1 };
  return granted;
}

/** Per-member usage of promotions that have ended can never matter again. */
export function pruneEndedPromotionUsage(work: Work, atMs: number): void {
  for (const promotionId in work.state.promotionUsage) {
    const promotion = work.program.promotionById.get(promotionId);
    if (promotion !== undefined && promotion.endsAtMs > atMs) continue;
    delete writeRecord(work, 'promotionUsage')[promotionId];
  }
}
