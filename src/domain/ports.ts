import { assert, assertSafeInteger } from './assert.js';
import type { Program } from './program.js';

/**
 * The one seam of the domain. Everything a decision needs is in (state, event,
 * program, time) except global promotion budgets, which many actor threads
 * draw from at once. The engine implements BudgetPort over shared memory with
 * Atomics (one counter pair per promotion) and persists the usage that
 * decisions report; tests use createMemoryBudgets.
 */

export interface BudgetLimit {
  readonly points?: number;
  readonly uses?: number;
}

export interface BudgetPort {
  /**
   * Atomically take from a promotion's global budget: one use (when it has a
   * use limit) and up to `points` points (when it has a points limit).
   * Returns the points granted: `points` when nothing limits them, fewer when
   * the points budget runs low, 0 when the budget is spent, in which case
   * nothing at all is taken. A promotion without a global budget is never
   * asked.
   */
  tryConsume(promotionId: string, points: number): number;
  /** Give back what one tryConsume took (the points it returned and its use), when a decision is dropped. */
  release(promotionId: string, points: number): void;
}

export interface DomainPorts {
  readonly budgets: BudgetPort;
}

/** The global budgets a program declares, keyed by promotion id: what the engine must allocate counters for. */
export function globalBudgetLimits(program: Program): Record<string, BudgetLimit> {
  const limits: Record<string, BudgetLimit> = {};
  for (const promotion of program.promotions) {
    const global = promotion.budget.global;
    if (global !== undefined) limits[promotion.id] = { ...global };
  }
  return limits;
}

export interface MemoryBudgets extends BudgetPort {
  /** What has been taken so far (for tests and reports). */
  usage(promotionId: string): { readonly points: number; readonly uses: number };
}

/**
 * A single-threaded BudgetPort for tests and tools: the same take-if-available
 * rule the engine's Atomics implementation must follow.
 */
export function createMemoryBudgets(limits: Readonly<Record<string, BudgetLimit>>): MemoryBudgets {
  const used = new Map<string, { points: number; uses: number }>();
  const usageOf = (promotionId: string) => {
    let usage = used.get(promotionId);
    if (usage === undefined) {
      usage = { points: 0, uses: 0 };
      used.set(promotionId, usage);
    }
    return usage;
  };
  return {
    tryConsume(promotionId, points) {
      assertSafeInteger(points, 'points');
      assert(points > 0, 'points to take must be positive');
      const limit = Object.hasOwn(limits, promotionId) ? limits[promotionId] : undefined;
      if (limit === undefined) return points;
      const usage = usageOf(promotionId);
      if (limit.uses !== undefined && usage.uses >= limit.uses) return 0;
      const granted = limit.points === undefined ? points : Math.min(points, limit.points - usage.points);
      if (granted <= 0) return 0;
      usage.points += granted;
      usage.uses += 1;
      return granted;
    },
    release(promotionId, points) {
      const usage = usageOf(promotionId);
      assert(usage.uses >= 1, 'release without a matching take');
      assert(usage.points >= points, 'release of more points than taken');
      usage.points -= points;
      usage.uses -= 1;
    },
    usage(promotionId) {
      const usage = usageOf(promotionId);
      return { points: usage.points, uses: usage.uses };
    },
  };
}

/** For programs without global budgets, and for tools that only read. */
export const unlimitedBudgets: BudgetPort = {
  tryConsume: (_promotionId, points) => points,
  release: () => undefined,
};
