import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { applyEvent, createMemoryBudgets, globalBudgetLimits, programSchema, sweepMember, validateEvent, type Decision, type MemberState } from '../../../src/domain/index.js';
import { addKpis, dayKeyOf, emptyDay, mergeDay, type DayCounters, type KpiTarget } from '../../../src/reports/kpis.js';

/**
 * The program KPIs are kept from differences, decision by decision; whatever the sequence of events and sweeps,
 * their running sums must equal what the final member states say: members, paid plan members, orders, revenue,
 * returns, donations, badges, the liability and the members past the inactivity horizon.
 */

// The hybrid sample, with a short inactivity horizon so that lapses and comebacks happen within a sequence.
const program = programSchema.parse({
  ...(parseYaml(readFileSync(new URL('../../../config/programs/hybrid.yaml', import.meta.url), 'utf8')) as object),
  reports: { inactiveAfterDays: 20 },
});
const OFFSET = program.utcOffsetMinutes;
const START_MS = Date.parse('2026-01-05T10:00:00Z');
const HOUR_MS = 3_600_000;
const MEMBERS = ['m0', 'm1', 'm2', 'm3'];

type Step = { kind: 'event'; member: number; action: number; amount: number; hoursLater: number } | { kind: 'sweep'; hoursLater: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 9, arbitrary: fc.record({ kind: fc.constant('event' as const), member: fc.nat(MEMBERS.length - 1), action: fc.nat(11), amount: fc.integer({ min: 1, max: 80_000 }), hoursLater: fc.nat(24 * 6) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sweep' as const), hoursLater: fc.nat(24 * 90) }) },
);

class Counters implements KpiTarget {
  readonly days = new Map<number, DayCounters>();
  readonly periods = new Map<string, number>();
  day(key: number): DayCounters {
    if (!this.days.has(key)) this.days.set(key, emptyDay());
    return this.days.get(key)!;
  }
  week(key: number) {
    return this.period(`w${key}`);
  }
  month(key: number) {
    return this.period(`m${key}`);
  }
  private period(name: string) {
    const periods = this.periods;
    return {
      get activeMembers() {
        return periods.get(name) ?? 0;
      },
      set activeMembers(value: number) {
        periods.set(name, value);
      },
    };
  }
}

function eventFor(memberId: string, state: MemberState | undefined, action: number, amount: number, id: string, occurredAt: string): Record<string, unknown> {
  const orders = state?.orders ?? [];
  switch (action) {
    case 0:
    case 1:
      return { id, memberId, type: 'purchase', occurredAt, amountMinor: amount, currency: 'EUR', orderId: `o-${id}`, items: [{ sku: 'B', category: action === 0 ? 'books' : 'other', quantity: 1, unitPriceMinor: amount }] };
    case 2:
      // Too few points for the reward: a big purchase instead, so that redemptions happen often enough.
      if ((state?.currencies.points?.spendable ?? 0) < 500) return { id, memberId, type: 'purchase', occurredAt, amountMinor: 60_000, currency: 'EUR' };
      return { id, memberId, type: 'redemption', occurredAt, rewardId: 'reward-5', points: 500, currency: 'points', orderId: `o-${id}-paid` };
    case 3: {
      // The order a kept redemption paid for, if any: an order with redeemed points.
      const paidFor = state?.redemptions.findLast((redemption) => redemption.orderId !== undefined)?.orderId;
      return { id, memberId, type: 'purchase', occurredAt, amountMinor: amount, currency: 'EUR', orderId: paidFor ?? `o-${id}` };
    }
    case 4:
      return orders.length === 0
        ? { id, memberId, type: 'activity', occurredAt, activity: 'review' }
        : { id, memberId, type: 'return', occurredAt, orderId: orders[amount % orders.length]!.orderId, amountMinor: 1 + (amount % 500) };
    case 5:
      return { id, memberId, type: 'membership_fee', occurredAt, planId: amount % 2 === 0 ? 'premium-monthly' : 'premium-yearly', amountMinor: amount % 2 === 0 ? 499 : 3999, currency: 'EUR' };
    case 6:
      return { id, memberId, type: 'membership_cancel', occurredAt };
    case 7:
      return { id, memberId, type: 'donation', occurredAt, causeId: amount % 2 === 0 ? 'literacy' : 'trees', points: 100 + (amount % 400), currency: 'points' };
    case 8:
      return { id, memberId, type: 'activity', occurredAt, activity: 'review' };
    case 9:
      return { id, memberId, type: 'unenroll', occurredAt };
    case 10:
      return { id, memberId, type: 'enroll', occurredAt };
    default:
      return { id, memberId, type: 'adjustment', occurredAt, direction: 'credit', points: 1 + (amount % 300), currency: 'points', reason: 'goodwill', operator: 'ops' };
  }
}

describe('program KPIs: running sums equal the final member states', () => {
  it('for any sequence of events and sweeps of a few members', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 120, size: 'max' }), (steps) => {
        const counters = new Counters();
        const states = new Map<string, MemberState>();
        const ledger: { kind: string; reference?: string; points: number }[] = [];
        const budgets = createMemoryBudgets(globalBudgetLimits(program));
        const tierRank = new Map(program.tiers.map((tier, index) => [tier.id, index]));
        const record = (before: MemberState | undefined, decision: Decision, atMs: number) => {
          if (decision.state === undefined) return;
          states.set(decision.state.memberId, decision.state);
          ledger.push(...decision.ledger);
          addKpis(counters, { before, after: decision.state, ledger: decision.ledger, tierRank, atMs, utcOffsetMinutes: OFFSET });
        };
        let nowMs = START_MS;
        steps.forEach((item, index) => {
          nowMs += item.hoursLater * HOUR_MS;
          if (item.kind === 'sweep') {
            for (const [memberId, state] of states) record(state, sweepMember(state, nowMs, program), nowMs), void memberId;
            return;
          }
          const memberId = MEMBERS[item.member]!;
          const before = states.get(memberId);
          const validation = validateEvent(eventFor(memberId, before, item.action, item.amount, `e${index}`, new Date(nowMs).toISOString()));
          if (!validation.ok) throw new Error(validation.reason);
          record(before, applyEvent(before, validation.event, validation.occurredAtMs, program, { budgets }), validation.occurredAtMs);
        });

        const total = [...counters.days.values()].reduce((sum, day) => mergeDay(sum, day), emptyDay());
        const finals = [...states.values()];
        const count = (predicate: (state: MemberState) => boolean) => finals.filter(predicate).length;
        const sum = (value: (state: MemberState) => number) => finals.reduce((acc, state) => acc + value(state), 0);
        expect(total.enrollments - total.unenrollments).toBe(count((state) => state.status === 'active'));
        for (const plan of program.paidMemberships) {
          expect(total.paid[plan.id]?.membersDelta ?? 0, plan.id).toBe(count((state) => state.paid?.planId === plan.id && state.paid.status === 'active'));
        }
        expect(Object.values(total.paid).reduce((acc, plan) => acc + plan.feesMinor, 0)).toBe(sum((state) => state.paid?.feesMinor ?? 0));
        expect(total.orders).toBe(sum((state) => state.engagement?.orders ?? 0));
        expect(total.revenueMinor).toBe(sum((state) => state.engagement?.revenueMinor ?? 0));
        expect(total.redeemedOrders).toBe(sum((state) => state.engagement?.redeemedOrders ?? 0));
        expect(total.returns).toBe(sum((state) => state.engagement?.returns ?? 0));
        expect(total.returnedMinor).toBe(sum((state) => state.engagement?.returnedMinor ?? 0));
        for (const cause of ['literacy', 'trees']) {
          const donated = ledger.filter((entry) => entry.kind === 'donate' && entry.reference === cause).reduce((acc, entry) => acc - entry.points, 0);
          expect(total.donations[cause]?.points ?? 0, cause).toBe(donated);
        }
        expect(Object.values(total.badges).reduce((acc, earned) => acc + earned, 0)).toBe(sum((state) => Object.keys(state.badges ?? {}).length));
        const liability = Object.values(total.currencies).reduce((acc, currency) => acc + currency.liabilityDelta, 0);
        expect(liability).toBe(sum((state) => Object.values(state.currencies).reduce((acc, currency) => acc + currency.spendable + currency.pending, 0)));
        // Members past the horizon on the last day: the lapses counted ahead up to it, less the comebacks.
        const lastDay = dayKeyOf(nowMs, OFFSET);
        const inactive = [...counters.days.entries()].filter(([day]) => day <= lastDay).reduce((acc, [, day]) => acc + day.inactiveDelta, 0);
        expect(inactive).toBe(count((state) => state.status === 'active' && state.engagement?.inactiveAtMs != null && dayKeyOf(state.engagement.inactiveAtMs, OFFSET) <= lastDay));
        // Distinct purchasers of a day never exceed the orders of that day, repeat purchasers never the purchasers.
        for (const day of counters.days.values()) {
          expect(day.purchasersDay).toBeLessThanOrEqual(day.orders);
          expect(day.repeatPurchasersDay).toBeLessThanOrEqual(day.purchasersDay + day.orders);
        }
      }),
      { numRuns: 200 },
    );
  });
});
