import { describe, expect, it } from 'vitest';
import { applyEvent, createMemoryBudgets, globalBudgetLimits, programSchema, validateEvent, type MemberState, type Program } from '../../../src/domain/index.js';
import { reportProgramInfo } from '../../../src/api/report-reader.js';
import { addKpis, emptyDay, mergeDay, type DayCounters, type KpiTarget } from '../../../src/reports/kpis.js';
import { buildProgramReport, buildReport, netOfBreakage, type ReportSource } from '../../../src/reports/report.js';

/**
 * Issue 16, item 4: the program KPIs against a scenario computed by hand. Events go through the domain and
 * addKpis exactly as the actor does (the counters of each decision added to day, week and month records), and the
 * report is built from those records.
 */

const program: Program = programSchema.parse({
  id: 'kpi-program',
  name: 'KPI program',
  currency: 'EUR',
  currencies: [{ id: 'points', value: { minor: 1, perPoints: 1 }, expiry: { kind: 'rolling', months: 1 } }],
  earn: { points: 1, perAmountMinor: 100, rounding: 'floor' },
  tiers: [
    { id: 'member', name: 'Member', qualifyingPointsMin: 0 },
    { id: 'silver', name: 'Silver', qualifyingPointsMin: 1000 },
  ],
  returns: { windowDays: 30 },
  redemption: { cancelWindowDays: 30 },
  paidMemberships: [{ id: 'plus', name: 'Plus', feeMinor: 500, termMonths: 1 }],
  donations: { causes: [{ id: 'trees', name: 'Trees' }] },
  badges: [{ id: 'first-order', name: 'First order', rule: { kind: 'purchase_count', count: 1 } }],
  reports: { inactiveAfterDays: 30 },
});

class Counters implements KpiTarget {
  readonly days = new Map<number, DayCounters>();
  readonly weeks = new Map<number, number>();
  readonly months = new Map<number, number>();
  day(key: number): DayCounters {
    if (!this.days.has(key)) this.days.set(key, emptyDay());
    return this.days.get(key)!;
  }
  week(key: number) {
    const weeks = this.weeks;
    return {
      get activeMembers() {
        return weeks.get(key) ?? 0;
      },
      set activeMembers(value: number) {
        weeks.set(key, value);
      },
    };
  }
  month(key: number) {
    const months = this.months;
    return {
      get activeMembers() {
        return months.get(key) ?? 0;
      },
      set activeMembers(value: number) {
        months.set(key, value);
      },
    };
  }
}

/*
 * The scenario (UTC; D1 Monday 5 October 2026, D2 Tuesday 6 October, D3 Monday 12 October):
 *
 *  #   time            member  event                                            effect on the KPIs
 *  1   D1 10:00        alice   purchase 100.00, enrolls                         order, purchaser; badge first-order
 *  2   D1 11:00        bob     purchase 50.00, enrolls                          order, purchaser; badge
 *  3   D1 12:00        alice   redeems 50 points for order o-a2                 (names the order)
 *  4   D1 12:05        alice   purchase 80.00 as order o-a2                     order with points; alice a repeat purchaser
 *  5   D2 09:00        carol   purchase 20.00, enrolls                          order, purchaser; badge
 *  6   D2 10:00        bob     refund of 25.00 of his order                     return, 25.00 back (no member activity)
 *  7   D2 11:00        carol   fee of Plus, 5.00 (a month, to 6 Nov 11:00)      plan joined
 *  8   D2 12:00        alice   donates 30 points to trees                       donation
 *  9   D3 10:00        bob     purchase 30.00                                   bob's second order: a repeat purchaser this week and month
 *  10  D3 11:00/12:00  dave    enrolls, unenrolls                               enrollment, unenrollment: churned
 *  11  20 Nov 10:00    carol   purchase 40.00                                   Plus lapsed on 6 Nov; carol back after the horizon
 *
 * Inactivity horizon 30 days from the last activity: alice 5 Nov 12:00 (the donation), carol 5 Nov 11:00 (the
 * fee), bob 11 Nov 10:00 (the refund is no activity): three lapses in November, carol reactivated on 20 Nov.
 */
function scenario(): Counters {
  const counters = new Counters();
  const states = new Map<string, MemberState>();
  const budgets = createMemoryBudgets(globalBudgetLimits(program));
  const tierRank = new Map(program.tiers.map((tier, index) => [tier.id, index]));
  const send = (memberId: string, event: Record<string, unknown>) => {
    const validation = validateEvent({ memberId, ...event });
    if (!validation.ok) throw new Error(validation.reason);
    const before = states.get(memberId);
    const decision = applyEvent(before, validation.event, validation.occurredAtMs, program, { budgets });
    const rejected = decision.outcomes.find((outcome) => outcome.kind === 'rejected');
    if (rejected !== undefined) throw new Error(`${String(event.id)} rejected: ${JSON.stringify(rejected)}`);
    states.set(memberId, decision.state!);
    addKpis(counters, { before, after: decision.state!, ledger: decision.ledger, tierRank, atMs: validation.occurredAtMs, utcOffsetMinutes: 0 });
  };
  const purchase = (memberId: string, id: string, occurredAt: string, amountMinor: number, orderId?: string) =>
    send(memberId, { id, type: 'purchase', occurredAt, amountMinor, currency: 'EUR', ...(orderId === undefined ? {} : { orderId }) });
  purchase('alice', 'a1', '2026-10-05T10:00:00Z', 10_000);
  purchase('bob', 'b1', '2026-10-05T11:00:00Z', 5_000);
  send('alice', { id: 'a-redeem', type: 'redemption', occurredAt: '2026-10-05T12:00:00Z', rewardId: 'discount', points: 50, currency: 'points', orderId: 'o-a2' });
  purchase('alice', 'a2', '2026-10-05T12:05:00Z', 8_000, 'o-a2');
  purchase('carol', 'c1', '2026-10-06T09:00:00Z', 2_000);
  send('bob', { id: 'b-refund', type: 'return', occurredAt: '2026-10-06T10:00:00Z', orderId: 'b1', amountMinor: 2_500 });
  send('carol', { id: 'c-fee', type: 'membership_fee', occurredAt: '2026-10-06T11:00:00Z', planId: 'plus', amountMinor: 500, currency: 'EUR' });
  send('alice', { id: 'a-give', type: 'donation', occurredAt: '2026-10-06T12:00:00Z', causeId: 'trees', points: 30, currency: 'points' });
  purchase('bob', 'b2', '2026-10-12T10:00:00Z', 3_000);
  send('dave', { id: 'd-in', type: 'enroll', occurredAt: '2026-10-12T11:00:00Z' });
  send('dave', { id: 'd-out', type: 'unenroll', occurredAt: '2026-10-12T12:00:00Z' });
  purchase('carol', 'c2', '2026-11-20T10:00:00Z', 4_000);
  return counters;
}

const NO_PAID = { switched: 0, lapsed: 0, cancelled: 0, renewed: 0 };

describe('program KPIs against a hand-computed scenario', () => {
  const counters = scenario();
  const source: ReportSource = counters;
  const info = reportProgramInfo(program);
  const report = (period: 'day' | 'week' | 'month', from: string, to: string) => buildProgramReport(source, info, period, Date.parse(from), Date.parse(to));

  it('per day', () => {
    const [d1, d2, , , , , , d3] = report('day', '2026-10-05T00:00:00Z', '2026-10-13T00:00:00Z');
    expect(d1).toEqual({
      period: '2026-10-05',
      orders: 3,
      revenueMinor: 23_000,
      averageOrderMinor: 7_667,
      ordersWithPoints: 1,
      revenueWithPointsMinor: 8_000,
      averageOrderWithPointsMinor: 8_000,
      ordersWithoutPoints: 2,
      revenueWithoutPointsMinor: 15_000,
      averageOrderWithoutPointsMinor: 7_500,
      returns: 0,
      returnedMinor: 0,
      returnRate: 0,
      activeMembers: 2,
      orderFrequency: 1.5,
      purchasers: 2,
      repeatPurchasers: 1,
      repeatPurchaseRate: 0.5,
      members: 2,
      enrollments: 2,
      unenrollments: 0,
      lapsed: 0,
      reactivated: 0,
      inactiveMembers: 0,
      churned: 0,
      churnRate: 0,
      retentionRate: 0,
      paidMemberships: [],
      donations: [],
      badges: { 'first-order': 2 },
    });
    expect(d2).toMatchObject({
      period: '2026-10-06',
      orders: 1,
      revenueMinor: 2_000,
      averageOrderMinor: 2_000,
      ordersWithPoints: 0,
      averageOrderWithPointsMinor: 0,
      returns: 1,
      returnedMinor: 2_500,
      returnRate: 1,
      activeMembers: 2, // carol, and alice's donation; bob's refund is no activity
      orderFrequency: 0.5,
      purchasers: 1,
      repeatPurchasers: 0,
      members: 3,
      enrollments: 1,
      churned: 0,
      churnRate: 0,
      retentionRate: 1, // (3 engaged at the end − 1 new) ÷ 2 at the start
      paidMemberships: [{ planId: 'plus', members: 1, joined: 1, feesMinor: 500, ...NO_PAID }],
      donations: [{ causeId: 'trees', currency: 'points', points: 30, donations: 1, valueMinor: 30 }],
      badges: { 'first-order': 1 },
    });
    expect(d3).toMatchObject({
      period: '2026-10-12',
      orders: 1,
      purchasers: 1,
      repeatPurchasers: 1,
      activeMembers: 2, // bob, dave
      members: 3,
      enrollments: 1,
      unenrollments: 1,
      churned: 1,
      churnRate: 1 / 3,
      retentionRate: 2 / 3,
      paidMemberships: [{ planId: 'plus', members: 1, joined: 0, feesMinor: 0, ...NO_PAID }],
      donations: [],
      badges: {},
    });
  });

  it('per week: purchasers and repeat purchasers are distinct members of the week', () => {
    expect(report('week', '2026-10-05T00:00:00Z', '2026-10-19T00:00:00Z')).toMatchObject([
      {
        period: '2026-10-05',
        orders: 4,
        revenueMinor: 25_000,
        averageOrderMinor: 6_250,
        ordersWithPoints: 1,
        averageOrderWithPointsMinor: 8_000,
        ordersWithoutPoints: 3,
        revenueWithoutPointsMinor: 17_000,
        averageOrderWithoutPointsMinor: 5_667,
        returns: 1,
        returnRate: 0.25,
        activeMembers: 3,
        orderFrequency: 4 / 3,
        purchasers: 3,
        repeatPurchasers: 1,
        repeatPurchaseRate: 1 / 3,
        members: 3,
        enrollments: 3,
        churned: 0,
        badges: { 'first-order': 3 },
      },
      { period: '2026-10-12', orders: 1, purchasers: 1, repeatPurchasers: 1, activeMembers: 2, members: 3, churned: 1, churnRate: 1 / 3, retentionRate: 2 / 3 },
    ]);
  });

  it('per month: October, and November with the lapses past the horizon, the comeback and the plan lapse', () => {
    const [october, november] = report('month', '2026-10-01T00:00:00Z', '2026-12-01T00:00:00Z');
    expect(october).toMatchObject({
      period: '2026-10-01',
      orders: 5,
      revenueMinor: 28_000,
      averageOrderMinor: 5_600,
      ordersWithPoints: 1,
      ordersWithoutPoints: 4,
      averageOrderWithoutPointsMinor: 5_000,
      returns: 1,
      returnedMinor: 2_500,
      returnRate: 0.2,
      activeMembers: 4,
      orderFrequency: 1.25,
      purchasers: 3,
      repeatPurchasers: 2, // alice (D1), bob (D3)
      repeatPurchaseRate: 2 / 3,
      members: 3,
      enrollments: 4,
      unenrollments: 1,
      churned: 1,
      paidMemberships: [{ planId: 'plus', members: 1, joined: 1, feesMinor: 500, ...NO_PAID }],
      donations: [{ causeId: 'trees', points: 30, donations: 1 }],
    });
    expect(november).toMatchObject({
      period: '2026-11-01',
      orders: 1,
      purchasers: 1,
      repeatPurchasers: 1,
      activeMembers: 1,
      members: 3,
      lapsed: 3,
      reactivated: 1,
      inactiveMembers: 2,
      churned: 3,
      churnRate: 1,
      retentionRate: 0, // (1 engaged at the end − 1 reactivated) ÷ 3
      paidMemberships: [{ planId: 'plus', members: 0, joined: 0, lapsed: 1, feesMinor: 0, renewed: 0, switched: 0, cancelled: 0 }],
    });
    // The plan lapse counts on the day it took effect (6 Nov), though applied by carol's purchase on 20 Nov.
    const days = report('day', '2026-11-05T00:00:00Z', '2026-11-07T00:00:00Z');
    expect(days.map((row) => [row.period, row.lapsed, row.paidMemberships[0]?.lapsed])).toEqual([
      ['2026-11-05', 2, 0],
      ['2026-11-06', 0, 1],
    ]);
  });

  it('breakage and the liability net of it, per currency', () => {
    const [november] = buildReport(source, info, 'month', Date.parse('2026-11-01T00:00:00Z'), Date.parse('2026-12-01T00:00:00Z'));
    // Issued 280 in October and 40 in November; carol's 20 points of 6 October expired (applied on 20 November).
    expect(november).toMatchObject({
      pointsIssued: 40,
      pointsExpired: 20,
      breakageRate: 0.5,
      breakageRateLifetime: 20 / 320,
      liabilityPoints: 195, // alice 100, bob 55, carol 40
      liabilityNetPoints: 182, // ⌊195 × 300 ÷ 320⌋
      liabilityNetMinor: 182,
    });
    const expected = buildReport(
      source,
      { ...info, expectedBreakagePercent: new Map([['points', 20]]) },
      'month',
      Date.parse('2026-11-01T00:00:00Z'),
      Date.parse('2026-12-01T00:00:00Z'),
    )[0]!;
    expect(expected.liabilityNetPoints).toBe(156); // ⌊195 × 80 ÷ 100⌋
    expect(netOfBreakage(Number.MAX_SAFE_INTEGER, undefined, Number.MAX_SAFE_INTEGER, 1)).toBe(Number.MAX_SAFE_INTEGER - 1);
  });

  it('day records written before the program counters read as zeros', () => {
    const old = { currencies: {}, enrollments: 1, upgrades: 0, downgrades: 0, tierDelta: {}, activeMembers: 1, promotions: {} } as unknown as DayCounters;
    const merged = mergeDay(old, emptyDay());
    expect(merged.orders).toBe(0);
    expect(merged.lapsed).toBe(0);
    const into = mergeDay(emptyDay(), old);
    expect(into).toEqual({ ...emptyDay(), enrollments: 1, activeMembers: 1 });
    const rows = buildProgramReport({ days: new Map([[20_000, old]]), weeks: new Map(), months: new Map() }, info, 'day', 20_000 * 86_400_000, 20_001 * 86_400_000);
    expect(rows[0]).toMatchObject({ orders: 0, members: 1, paidMemberships: [], donations: [], badges: {} });
  });
});
