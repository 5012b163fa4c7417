import { assert } from '../domain/assert.js';
import type { BudgetLimit, BudgetPort } from '../domain/ports.js';

/**
 * Global promotion budgets shared by every actor thread, exact without
 * messages: one slot per promotion in a SharedArrayBuffer, guarded by a tiny
 * spin lock (Atomics.compareExchange), holding used points and uses. Taking is
 * a few hundred nanoseconds; contention is two threads at most per core.
 *
 * Usage is persisted by the actors with each commit (per actor, per
 * promotion); at start the buffer is filled from the committed totals, so a
 * crash forgets reservations of uncommitted batches exactly as it forgets the
 * batches themselves.
 *
 * Cluster mode (docs/cluster.md, src/runtime/cluster-globals.ts): the same
 * slots, but a slot's limit is not the promotion's budget, it is what this
 * instance has reserved of it in the cluster's KV counter (`allowance:
 * 'reserved'` starts it at the usage, so nothing may be granted before a
 * reservation). The main thread raises the limit as it reserves chunks
 * (`grant`) and lowers it to the usage when it gives the rest back
 * (`withdraw`); the actors' hot path is the same lock and the same compare,
 * so an instance never grants more than it reserved.
 */
export interface BudgetLayout {
  readonly ids: readonly string[];
  readonly buffer: SharedArrayBuffer;
}

/**
 * A slot: an int32 lock word (padded to 8 bytes), then float64
 * [limitPoints, usedPoints, limitUses, usedUses, refused]; `refused` counts
 * takes that got less than asked because of the limit (demand the main thread
 * cannot see in the usage when an allowance ran out).
 */
const F64_PER_SLOT = 5;
const BYTES_PER_SLOT = 8 + F64_PER_SLOT * 8;
const NO_LIMIT = -1;

/** What a slot holds; a limit is null when the promotion has no limit of that kind. */
export interface BudgetStanding {
  readonly limitPoints: number | null;
  readonly usedPoints: number;
  readonly limitUses: number | null;
  readonly usedUses: number;
  readonly refused: number;
}

/**
 * `allowance`: 'limits' (one instance) lets the actors grant up to the
 * promotion's budget; 'reserved' (cluster mode) sets each limit to the usage,
 * to be raised by what the instance reserves of the cluster's budget.
 */
export function createBudgetLayout(
  limits: Readonly<Record<string, BudgetLimit>>,
  used: ReadonlyMap<string, { readonly points: number; readonly uses: number }>,
  allowance: 'limits' | 'reserved' = 'limits',
): BudgetLayout {
  const ids = Object.keys(limits).sort();
  const buffer = new SharedArrayBuffer(Math.max(8, ids.length * BYTES_PER_SLOT));
  ids.forEach((id, index) => {
    const limit = limits[id]!;
    const values = new Float64Array(buffer, index * BYTES_PER_SLOT + 8, F64_PER_SLOT);
    const usage = used.get(id) ?? { points: 0, uses: 0 };
    values[0] = limit.points === undefined ? NO_LIMIT : allowance === 'limits' ? limit.points : usage.points;
    values[1] = usage.points;
    values[2] = limit.uses === undefined ? NO_LIMIT : allowance === 'limits' ? limit.uses : usage.uses;
    values[3] = usage.uses;
    values[4] = 0;
  });
  return { ids, buffer };
}

export class SharedBudgets implements BudgetPort {
  private readonly index = new Map<string, number>();
  private readonly locks: Int32Array;

  constructor(private readonly layout: BudgetLayout) {
    layout.ids.forEach((id, slot) => this.index.set(id, slot));
    this.locks = new Int32Array(layout.buffer);
  }

  get ids(): readonly string[] {
    return this.layout.ids;
  }

  tryConsume(promotionId: string, points: number): number {
    assert(Number.isSafeInteger(points) && points >= 0, 'budget points must be a non-negative integer');
    const slot = this.index.get(promotionId);
    assert(slot !== undefined, `promotion ${promotionId} has no global budget slot`);
    return this.locked(slot, (values) => {
      const limitPoints = values[0]!;
      const limitUses = values[2]!;
      if (limitUses !== NO_LIMIT && values[3]! >= limitUses) {
        values[4] = values[4]! + 1;
        return 0;
      }
      let granted = points;
      if (limitPoints !== NO_LIMIT) granted = Math.max(0, Math.min(points, limitPoints - values[1]!));
      if (granted < points) values[4] = values[4]! + 1;
      if (granted === 0 && points > 0) return 0;
      values[1] = values[1]! + granted;
      values[3] = values[3]! + 1;
      return granted;
    });
  }

  release(promotionId: string, points: number): void {
    const slot = this.index.get(promotionId);
    assert(slot !== undefined, `promotion ${promotionId} has no global budget slot`);
    this.locked(slot, (values) => {
      values[1] = values[1]! - points;
      values[3] = values[3]! - 1;
      assert(values[1]! >= 0 && values[3]! >= 0, 'budget released more than it took');
      return 0;
    });
  }

  usage(promotionId: string): { points: number; uses: number } {
    const slot = this.index.get(promotionId);
    if (slot === undefined) return { points: 0, uses: 0 };
    return this.locked(slot, (values) => ({ points: values[1]!, uses: values[3]! }));
  }

  /** The slot as it stands (cluster mode's main thread: how much of the allowance is left, and the demand). */
  standing(promotionId: string): BudgetStanding {
    const slot = this.slotOf(promotionId);
    return this.locked(slot, (values) => ({
      limitPoints: values[0] === NO_LIMIT ? null : values[0]!,
      usedPoints: values[1]!,
      limitUses: values[2] === NO_LIMIT ? null : values[2]!,
      usedUses: values[3]!,
      refused: values[4]!,
    }));
  }

  /** Cluster mode: raises the allowance by what was reserved (a kind without a limit is left unlimited). */
  grant(promotionId: string, points: number, uses: number): void {
    assert(Number.isSafeInteger(points) && points >= 0 && Number.isSafeInteger(uses) && uses >= 0, 'a grant is non-negative integers');
    const slot = this.slotOf(promotionId);
    this.locked(slot, (values) => {
      if (values[0] !== NO_LIMIT) values[0] = values[0]! + points;
      if (values[2] !== NO_LIMIT) values[2] = values[2]! + uses;
      return 0;
    });
  }

  /**
   * Cluster mode: lowers each limit to the usage in one locked step and
   * returns what was unspent, to give back; a take after it is refused, so
   * what is given back can never be granted here as well.
   */
  withdraw(promotionId: string): { points: number; uses: number } {
    const slot = this.slotOf(promotionId);
    return this.locked(slot, (values) => {
      let points = 0;
      let uses = 0;
      if (values[0] !== NO_LIMIT) {
        points = Math.max(0, values[0]! - values[1]!);
        values[0] = values[0]! - points;
      }
      if (values[2] !== NO_LIMIT) {
        uses = Math.max(0, values[2]! - values[3]!);
        values[2] = values[2]! - uses;
      }
      return { points, uses };
    });
  }

  private slotOf(promotionId: string): number {
    const slot = this.index.get(promotionId);
    assert(slot !== undefined, `promotion ${promotionId} has no global budget slot`);
    return slot;
  }

  private locked<T>(slot: number, action: (values: Float64Array) => T): T {
    const lockIndex = (slot * BYTES_PER_SLOT) / 4;
    // Spin: the critical section is a handful of loads and stores.
    while (Atomics.compareExchange(this.locks, lockIndex, 0, 1) !== 0) {
      Atomics.wait(this.locks, lockIndex, 1, 1);
    }
    try {
      return action(new Float64Array(this.layout.buffer, slot * BYTES_PER_SLOT + 8, F64_PER_SLOT));
    } finally {
      Atomics.store(this.locks, lockIndex, 0);
      Atomics.notify(this.locks, lockIndex, 1);
    }
  }
}
