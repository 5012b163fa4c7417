import type { KV } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { createBudgetLayout, SharedBudgets } from '../../../src/actors/budgets.js';
import { BudgetReservations } from '../../../src/cluster/budget-reservations.js';
import { createLogger } from '../../../src/log.js';
import { ClusterBudgets } from '../../../src/runtime/cluster-globals.js';

/**
 * ClusterBudgets over the real BudgetReservations and a KV held in memory
 * (get, create, update by revision: what the reservations use), with the
 * clock in the test's hand: the actors' slots never grant more than the
 * instance reserved, the cluster never more than the budget.
 * test/integration/cluster/globals-engines.test.ts runs it in two engines.
 */
class MemoryKv {
  private readonly entries = new Map<string, { value: Uint8Array; revision: number }>();
  private revision = 0;
  /** NATS away: every call fails. */
  away = false;

  async get(key: string) {
    this.check();
    const entry = this.entries.get(key);
    return entry === undefined ? null : { key, value: entry.value, revision: entry.revision, operation: 'PUT' as const };
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    this.check();
    if (this.entries.has(key)) throw new Error('wrong last sequence');
    this.entries.set(key, { value, revision: ++this.revision });
    return this.revision;
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    this.check();
    if (this.entries.get(key)?.revision !== revision) throw new Error('wrong last sequence');
    this.entries.set(key, { value, revision: ++this.revision });
    return this.revision;
  }

  private check(): void {
    if (this.away) throw new Error('TIMEOUT');
  }
}

const logger = createLogger('silent');
const LIMITS = { bonus: { points: 1_000 } };

function instance(kv: MemoryKv, clock: { ms: number }, live = 2): ClusterBudgets {
  const layout = createBudgetLayout(LIMITS, new Map(), 'reserved');
  return new ClusterBudgets(new SharedBudgets(layout), {
    reservations: new BudgetReservations(kv as unknown as KV, () => live),
    limits: LIMITS,
    chunks: 20, // 50 points
    logger,
    now: () => clock.ms,
  });
}

describe('ClusterBudgets', () => {
  it('reserves nothing up front in a reserved layout: the slot grants only what was reserved', () => {
    const slot = new SharedBudgets(createBudgetLayout(LIMITS, new Map([['bonus', { points: 30, uses: 3 }]]), 'reserved'));
    expect(slot.tryConsume('bonus', 5)).toBe(0);
    slot.grant('bonus', 8, 0);
    expect(slot.tryConsume('bonus', 5)).toBe(5);
    expect(slot.tryConsume('bonus', 5)).toBe(3); // the rest of the allowance, as the budget's last points are granted
    expect(slot.standing('bonus')).toEqual({ limitPoints: 38, usedPoints: 38, limitUses: null, usedUses: 5, refused: 2 });
    // A whole budget in one-instance mode is unchanged.
    const whole = new SharedBudgets(createBudgetLayout(LIMITS, new Map()));
    expect(whole.tryConsume('bonus', 999)).toBe(999);
    expect(whole.tryConsume('bonus', 5)).toBe(1);
  });

  it('two instances drawing from local chunks award exactly the budget, never over, and hold nothing reserved at the end', async () => {
    const kv = new MemoryKv();
    const clock = { ms: 0 };
    const instances = [instance(kv, clock), instance(kv, clock)];
    await Promise.all(instances.map((each) => each.fill()));
    let awarded = 0;
    const awardedBy = [0, 0];
    // Rounds of events (7 points each, a different number per instance), the main thread's polls between them.
    for (let round = 0; round < 400; round++) {
      instances.forEach((each, index) => {
        for (let event = 0; event < 1 + ((round + index * 3) % 5); event++) {
          const granted = each.budgets.tryConsume('bonus', 7);
          awarded += granted;
          awardedBy[index]! += granted;
          // Never more than this instance reserved.
          const standing = each.budgets.standing('bonus');
          expect(standing.usedPoints).toBeLessThanOrEqual(standing.limitPoints!);
        }
      });
      clock.ms += 10;
      await Promise.all(instances.map((each) => each.poll()));
    }
    expect(awarded).toBe(1_000);
    expect(awardedBy.every((points) => points > 0)).toBe(true);
    const reservations = new BudgetReservations(kv as unknown as KV, () => 2);
    expect(await reservations.reserved('bonus')).toEqual({ points: 1_000, uses: 0 });
    await Promise.all(instances.map((each) => each.stop()));
    expect(await reservations.reserved('bonus')).toEqual({ points: 1_000, uses: 0 });
  });

  it('gives back what is unspent at stop; a take after it is refused', async () => {
    const kv = new MemoryKv();
    const budgets = instance(kv, { ms: 0 });
    await budgets.fill();
    expect(budgets.budgets.standing('bonus').limitPoints).toBe(50);
    expect(budgets.budgets.tryConsume('bonus', 7)).toBe(7);
    await budgets.stop();
    expect(budgets.budgets.tryConsume('bonus', 7)).toBe(0);
    expect(await new BudgetReservations(kv as unknown as KV, () => 1).reserved('bonus')).toEqual({ points: 7, uses: 0 });
    expect(budgets.totals).toMatchObject({ reservedPoints: 50, givenBackPoints: 43 });
  });

  it('while NATS is away, grants what it holds, then treats the promotion as out of budget until a chunk comes', async () => {
    const kv = new MemoryKv();
    const clock = { ms: 0 };
    const budgets = instance(kv, clock);
    await budgets.fill();
    kv.away = true;
    let granted = 0;
    for (let round = 0; round < 50; round++) {
      granted += budgets.budgets.tryConsume('bonus', 7);
      clock.ms += 10;
      await budgets.poll();
    }
    expect(granted).toBe(50); // the one chunk it held, and nothing more
    expect(budgets.budgets.tryConsume('bonus', 7)).toBe(0);
    kv.away = false;
    clock.ms += 10_000; // past the retry delay
    await budgets.poll();
    expect(budgets.budgets.tryConsume('bonus', 7)).toBe(7);
    await budgets.stop();
  });

  it('gives an idle allowance back once the budget is all reserved, so an instance that is refused can grant it', async () => {
    const kv = new MemoryKv();
    const clock = { ms: 0 };
    const [idle, busy] = [instance(kv, clock), instance(kv, clock)];
    await idle.fill(); // holds 50, then nobody draws from it
    await busy.fill();
    let awarded = 0;
    for (let round = 0; round < 1_000; round++) {
      for (let event = 0; event < 3; event++) awarded += busy.budgets.tryConsume('bonus', 7);
      clock.ms += 10;
      await Promise.all([idle.poll(), busy.poll()]);
    }
    expect(awarded).toBe(1_000);
    expect(idle.totals.givenBackPoints).toBe(50);
    await Promise.all([idle.stop(), busy.stop()]);
  });
});
