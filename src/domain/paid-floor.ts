import type { CompiledProgram, CompiledTier } from './compiled.js';
import type { PaidPlan } from './program.js';
import type { MemberState } from './state.js';

/**
 * The tier a paid membership holds a member at, on its own so the tier
 * reviews (tiers.ts) can ask without importing the paid membership rules.
 */

const plansCache = new WeakMap<CompiledProgram, ReadonlyMap<string, PaidPlan>>();

/** The program's paid plans by id. */
export function plansOf(program: CompiledProgram): ReadonlyMap<string, PaidPlan> {
  let plans = plansCache.get(program);
  if (plans === undefined) {
    plans = new Map(program.program.paidMemberships.map((plan) => [plan.id, plan]));
    plansCache.set(program, plans);
  }
  return plans;
}

/** Whether the member's paid membership is active at `atMs` (up to the end of its grace). */
export function paidActiveAt(state: MemberState, atMs: number): boolean {
  const paid = state.paid;
  return paid !== undefined && paid.status === 'active' && atMs < paid.graceEndsAtMs;
}

/** The tier the paid membership holds the member at, at `atMs`; null when none. */
export function paidFloorTier(program: CompiledProgram, state: MemberState, atMs: number): CompiledTier | null {
  const paid = state.paid;
  if (paid === undefined || paid.floorTierId === null || !paidActiveAt(state, atMs)) return null;
  return program.tierById.get(paid.floorTierId) ?? null;
}
