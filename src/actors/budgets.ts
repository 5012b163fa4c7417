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
 */
export interface BudgetLayout {
  readonly ids: readonly string[];
  readonly buffer: SharedArrayBuffer;
}

/** A slot: an int32 lock word (padded to 8 bytes), then float64 [limitPoints, usedPoints, limitUses, usedUses]. */
const F64_PER_SLOT = 4;
const BYTES_PER_SLOT = 8 + F64_PER_SLOT * 8;
const NO_LIMIT = -1;

export function createBudgetLayout(
  limits: Readonly<Record<string, BudgetLimit>>,
  used: ReadonlyMap<string, { readonly points: number; readonly uses: number }>,
): BudgetLayout {
  const ids = Object.keys(limits).sort();
  const buffer = new SharedArrayBuffer(Math.max(8, ids.length * BYTES_PER_SLOT));
  ids.forEach((id, index) => {
    const limit = limits[id]!;
    const values = new Float64Array(buffer, index * BYTES_PER_SLOT + 8, F64_PER_SLOT);
    const usage = used.get(id) ?? { points: 0, uses: 0 };
    values[0] = limit.points ?? NO_LIMIT;
    values[1] = usage.points;
    values[2] = limit.uses ?? NO_LIMIT;
    values[3] = usage.uses;
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

  tryConsume(promotionId: string, points: number): number {
    assert(Number.isSafeInteger(points) && points >= 0, 'budget points must be a non-negative integer');
    const slot = this.index.get(promotionId);
    assert(slot !== undefined, `promotion ${promotionId} has no global budget slot`);
    return this.locked(slot, (values) => {
      const limitPoints = values[0]!;
      const limitUses = values[2]!;
      if (limitUses !== NO_LIMIT && values[3]! >= limitUses) return 0;
      let granted = points;
      if (limitPoints !== NO_LIMIT) granted = Math.max(0, Math.min(points, limitPoints - values[1]!));
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
