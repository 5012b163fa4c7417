import type { KV } from '@nats-io/kv';
import { EngineError } from '../config/errors.js';
import { assert } from '../domain/assert.js';

/**
 * Global promotion budgets exact across engine instances (issue 17): the
 * budget's usage lives in one KV key per promotion, and instances reserve
 * chunks of it by compare-and-set, then grant from their chunk locally (the
 * actors' SharedArrayBuffer slots, src/actors/budgets.ts, with the chunk as
 * their limit). Never over: the sum of every instance's reservations is at
 * most the limit, because each reservation is a CAS on the same revision.
 * Near the end a chunk is at most the remainder divided by the live
 * instances, so what one instance holds unspent while another refuses is
 * bounded by that share, and an instance gives back its unspent reservation
 * when it releases a promotion (stop, program change) or is told the others
 * are refusing.
 */

export interface BudgetUsage {
  readonly points: number;
  readonly uses: number;
}

export interface BudgetLimits {
  /** null: no limit of that kind. */
  readonly points: number | null;
  readonly uses: number | null;
}

export interface Reservation {
  readonly points: number;
  readonly uses: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** CAS attempts before giving up for this round (another instance won every time): the caller retries later. */
const CAS_ATTEMPTS_MAX = 32;

export function budgetKey(promotionId: string): string {
  assert(/^[A-Za-z0-9_-]{1,64}$/.test(promotionId), 'a promotion id used as a KV key is 1-64 of A-Z a-z 0-9 _ -');
  return `budget_${promotionId}`;
}

export class BudgetReservations {
  constructor(
    private readonly kv: KV,
    private readonly liveInstances: () => number,
  ) {}

  /** What every instance has reserved of a promotion's budget (0 when none has). */
  async reserved(promotionId: string): Promise<BudgetUsage> {
    const entry = await this.kv.get(budgetKey(promotionId));
    if (entry === null || entry.operation !== 'PUT' || entry.value.length === 0) return { points: 0, uses: 0 };
    return JSON.parse(decoder.decode(entry.value)) as BudgetUsage;
  }

  /**
   * Reserves up to `want` of the budget: the chunk shrinks to the remainder
   * divided by the live instances near the end, and is 0 once it is spent.
   * Returns what was reserved (the caller adds it to its local allowance).
   */
  async reserve(promotionId: string, limits: BudgetLimits, want: Reservation): Promise<Reservation> {
    assert(Number.isSafeInteger(want.points) && want.points >= 0 && Number.isSafeInteger(want.uses) && want.uses >= 0, 'a reservation is non-negative integers');
    const key = budgetKey(promotionId);
    for (let attempt = 0; attempt < CAS_ATTEMPTS_MAX; attempt++) {
      const entry = await this.kv.get(key);
      const live = entry !== null && entry.operation === 'PUT' && entry.value.length > 0;
      const used: BudgetUsage = live ? (JSON.parse(decoder.decode(entry.value)) as BudgetUsage) : { points: 0, uses: 0 };
      const share = Math.max(1, this.liveInstances());
      const take = (wanted: number, limit: number | null, usedSoFar: number): number => {
        if (limit === null) return wanted;
        const left = Math.max(0, limit - usedSoFar);
        return Math.min(wanted, left, Math.max(1, Math.ceil(left / share)));
      };
      const granted: Reservation = { points: take(want.points, limits.points, used.points), uses: take(want.uses, limits.uses, used.uses) };
      if (granted.points === 0 && granted.uses === 0) return granted;
      const next = encoder.encode(JSON.stringify({ points: used.points + granted.points, uses: used.uses + granted.uses }));
      try {
        if (entry === null) await this.kv.create(key, next);
        else await this.kv.update(key, next, entry.revision);
        return granted;
      } catch {
        // Another instance reserved in between: read again.
      }
    }
    return { points: 0, uses: 0 };
  }

  /** Gives back an unspent reservation, so other instances can grant it. */
  async giveBack(promotionId: string, unspent: Reservation): Promise<void> {
    if (unspent.points === 0 && unspent.uses === 0) return;
    const key = budgetKey(promotionId);
    for (let attempt = 0; attempt < CAS_ATTEMPTS_MAX * 4; attempt++) {
      const entry = await this.kv.get(key);
      assert(entry !== null && entry.operation === 'PUT', `giving back budget of ${promotionId} that was never reserved`);
      const used = JSON.parse(decoder.decode(entry.value)) as BudgetUsage;
      assert(used.points >= unspent.points && used.uses >= unspent.uses, `giving back more of ${promotionId} than is reserved`);
      try {
        await this.kv.update(key, encoder.encode(JSON.stringify({ points: used.points - unspent.points, uses: used.uses - unspent.uses })), entry.revision);
        return;
      } catch {
        // raced: read again
      }
    }
    throw new EngineError('ERR_BUDGET_CONTENDED', `could not give back budget of ${promotionId}: the key changed at every one of ${CAS_ATTEMPTS_MAX * 4} attempts`);
  }
}
