import type { ReportPeriod, ReportRow } from '../api/context.js';
import { DAY_MS, dayKeyOf, emptyDay, mergeDay, monthKeyOf, weekKeyOf, type DayCounters } from './kpis.js';

/**
 * Builds KPI rows from stored counters: days are summed into weeks or months;
 * liability and tier distribution are running totals from the first day on.
 */
export interface ReportSource {
  /** Every stored day, merged across actors, by day key. */
  readonly days: ReadonlyMap<number, DayCounters>;
  readonly weeks: ReadonlyMap<number, number>;
  readonly months: ReadonlyMap<number, number>;
}

export interface ReportProgramInfo {
  readonly utcOffsetMinutes: number;
  /** Value of points in minor units of money: value = points × minor / perPoints. */
  readonly pointValues: ReadonlyMap<string, { readonly minor: number; readonly perPoints: number }>;
  readonly promotionBudgets: ReadonlyMap<string, { readonly points?: number; readonly uses?: number }>;
  /** Expected breakage per currency, in percent (currencies[].expectedBreakagePercent); absent: the observed rate. */
  readonly expectedBreakagePercent?: ReadonlyMap<string, number>;
  /** The points currency of each cause (donations.causes), for the value of donations. */
  readonly causeCurrencies?: ReadonlyMap<string, string>;
}

/** Period key of a day key. */
function periodKeyOfDay(dayKey: number, period: ReportPeriod, offsetMinutes: number): number {
  const ms = dayKey * DAY_MS - offsetMinutes * 60_000;
  if (period === 'day') return dayKey;
  if (period === 'week') return weekKeyOf(ms, offsetMinutes);
  return monthKeyOf(ms, offsetMinutes);
}

function periodLabel(key: number, period: ReportPeriod): string {
  if (period === 'month') return `${Math.floor(key / 12)}-${String((key % 12) + 1).padStart(2, '0')}-01`;
  return new Date(key * DAY_MS).toISOString().slice(0, 10);
}

export function buildReport(source: ReportSource, program: ReportProgramInfo, period: ReportPeriod, fromMs: number, toMs: number): ReportRow[] {
  const offset = program.utcOffsetMinutes;
  const firstDay = dayKeyOf(fromMs, offset);
  const lastDay = dayKeyOf(toMs - 1, offset);
  const sortedDays = [...source.days.keys()].sort((a, b) => a - b);

  // Running totals before the range.
  const liability = new Map<string, number>();
  const issuedTotal = new Map<string, number>();
  const expiredTotal = new Map<string, number>();
  const tiers = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, value: number) => map.set(key, (map.get(key) ?? 0) + value);
  const addRunning = (counters: DayCounters) => {
    for (const [currency, values] of Object.entries(counters.currencies)) {
      add(liability, currency, values.liabilityDelta);
      add(issuedTotal, currency, values.issued);
      add(expiredTotal, currency, values.expired);
    }
    for (const [tier, delta] of Object.entries(counters.tierDelta)) add(tiers, tier, delta);
  };
  for (const day of sortedDays) {
    if (day >= firstDay) break;
    addRunning(source.days.get(day)!);
  }

  const rows: ReportRow[] = [];
  let currentKey: number | undefined;
  let accumulated = emptyDay();
  const flush = () => {
    if (currentKey === undefined) return;
    const activeMembers =
      period === 'day' ? accumulated.activeMembers : period === 'week' ? (source.weeks.get(currentKey) ?? 0) : (source.months.get(currentKey) ?? 0);
    const currencies = new Set([...Object.keys(accumulated.currencies), ...liability.keys()]);
    for (const currency of [...currencies].sort()) {
      const values = accumulated.currencies[currency] ?? { issued: 0, redeemed: 0, expired: 0, adjusted: 0, clawedBack: 0, liabilityDelta: 0, redemptions: 0 };
      const liabilityPoints = liability.get(currency) ?? 0;
      const value = program.pointValues.get(currency);
      const issuedLifetime = issuedTotal.get(currency) ?? 0;
      const expiredLifetime = expiredTotal.get(currency) ?? 0;
      const liabilityNetPoints = netOfBreakage(liabilityPoints, program.expectedBreakagePercent?.get(currency), issuedLifetime, expiredLifetime);
      rows.push({
        period: periodLabel(currentKey, period),
        currency,
        pointsIssued: values.issued,
        pointsRedeemed: values.redeemed,
        pointsExpired: values.expired,
        pointsAdjusted: values.adjusted,
        pointsClawedBack: values.clawedBack,
        liabilityPoints,
        liabilityMinor: value === undefined ? 0 : Math.floor((liabilityPoints * value.minor) / value.perPoints),
        activeMembers,
        enrollments: accumulated.enrollments,
        redemptions: values.redemptions,
        redemptionRate: values.issued > 0 ? values.redeemed / values.issued : 0,
        breakageRate: values.issued > 0 ? values.expired / values.issued : 0,
        breakageRateLifetime: issuedLifetime > 0 ? expiredLifetime / issuedLifetime : 0,
        liabilityNetPoints,
        liabilityNetMinor: value === undefined ? 0 : Math.floor((liabilityNetPoints * value.minor) / value.perPoints),
        tierDistribution: Object.fromEntries([...tiers.entries()].filter(([, count]) => count !== 0).sort()),
        tierMovements: { upgrades: accumulated.upgrades, downgrades: accumulated.downgrades },
        promotions: Object.entries(accumulated.promotions)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([promotionId, usage]) => {
            const budget = program.promotionBudgets.get(promotionId);
            return {
              promotionId,
              points: usage.points,
              uses: usage.uses,
              ...(budget?.points !== undefined ? { budgetPoints: budget.points } : {}),
              ...(budget?.uses !== undefined ? { budgetUses: budget.uses } : {}),
            };
          }),
      });
    }
  };
  for (let day = firstDay; day <= lastDay; day++) {
    const key = periodKeyOfDay(day, period, offset);
    if (key !== currentKey) {
      flush();
      currentKey = key;
      accumulated = emptyDay();
    }
    const counters = source.days.get(day);
    if (counters !== undefined) {
      mergeDay(accumulated, counters);
      addRunning(counters);
    }
  }
  flush();
  return rows;
}

/**
 * The liability net of expected breakage: liability × (1 − rate), rounded
 * down, with the program's expected rate, or else the rate observed so far
 * (expired ÷ issued, clamped to 0..1). Exact in integers.
 */
export function netOfBreakage(liabilityPoints: number, expectedPercent: number | undefined, issued: number, expired: number): number {
  if (liabilityPoints <= 0) return liabilityPoints;
  if (expectedPercent !== undefined) return Number((BigInt(liabilityPoints) * BigInt(100 - expectedPercent)) / 100n);
  if (issued <= 0) return liabilityPoints;
  const kept = Math.min(issued, Math.max(0, issued - expired));
  return Number((BigInt(liabilityPoints) * BigInt(kept)) / BigInt(issued));
}

/** Program KPIs of one period: orders, revenue, members, churn, paid memberships, donations, badges. */
export interface ProgramReportRow {
  readonly period: string;
  readonly orders: number;
  readonly revenueMinor: number;
  /** revenueMinor ÷ orders, rounded to the nearest minor unit (0 without orders); likewise below. */
  readonly averageOrderMinor: number;
  /** Orders a redemption named (points redeemed at checkout), and the others. */
  readonly ordersWithPoints: number;
  readonly revenueWithPointsMinor: number;
  readonly averageOrderWithPointsMinor: number;
  readonly ordersWithoutPoints: number;
  readonly revenueWithoutPointsMinor: number;
  readonly averageOrderWithoutPointsMinor: number;
  readonly returns: number;
  readonly returnedMinor: number;
  /** returns ÷ orders of the period. */
  readonly returnRate: number;
  readonly activeMembers: number;
  /** orders ÷ activeMembers. */
  readonly orderFrequency: number;
  /** Distinct members with a purchase in the period, and those of them with at least two purchases so far. */
  readonly purchasers: number;
  readonly repeatPurchasers: number;
  readonly repeatPurchaseRate: number;
  /** Enrolled members at the period end. */
  readonly members: number;
  readonly enrollments: number;
  readonly unenrollments: number;
  /** Members who passed the inactivity horizon (reports.inactiveAfterDays) in the period, and who came back. */
  readonly lapsed: number;
  readonly reactivated: number;
  /** Enrolled members past the horizon at the period end. */
  readonly inactiveMembers: number;
  /** Engaged members (enrolled, within the horizon) lost in the period: unenrolled or lapsed. */
  readonly churned: number;
  /** churned ÷ engaged members at the period start. */
  readonly churnRate: number;
  /** (engaged at the end − new and reactivated in the period) ÷ engaged at the start. */
  readonly retentionRate: number;
  readonly paidMemberships: readonly {
    readonly planId: string;
    readonly members: number;
    readonly joined: number;
    readonly renewed: number;
    readonly switched: number;
    readonly lapsed: number;
    readonly cancelled: number;
    readonly feesMinor: number;
  }[];
  readonly donations: readonly { readonly causeId: string; readonly currency: string; readonly points: number; readonly donations: number; readonly valueMinor: number }[];
  readonly badges: Readonly<Record<string, number>>;
}

const ratio = (numerator: number, denominator: number): number => (denominator > 0 ? numerator / denominator : 0);
const average = (total: number, count: number): number => (count > 0 ? Math.round(total / count) : 0);

export function buildProgramReport(source: ReportSource, program: ReportProgramInfo, period: ReportPeriod, fromMs: number, toMs: number): ProgramReportRow[] {
  const offset = program.utcOffsetMinutes;
  const firstDay = dayKeyOf(fromMs, offset);
  const lastDay = dayKeyOf(toMs - 1, offset);
  const sortedDays = [...source.days.keys()].sort((a, b) => a - b);
  let members = 0;
  let inactive = 0;
  const paidMembers = new Map<string, number>();
  const addRunning = (counters: DayCounters) => {
    members += counters.enrollments - (counters.unenrollments ?? 0);
    inactive += counters.inactiveDelta ?? 0;
    for (const [planId, plan] of Object.entries(counters.paid ?? {})) paidMembers.set(planId, (paidMembers.get(planId) ?? 0) + plan.membersDelta);
  };
  for (const day of sortedDays) {
    if (day >= firstDay) break;
    addRunning(source.days.get(day)!);
  }
  const rows: ProgramReportRow[] = [];
  let currentKey: number | undefined;
  let accumulated = emptyDay();
  let engagedStart = 0;
  const flush = () => {
    if (currentKey === undefined) return;
    const a = accumulated;
    const activeMembers = period === 'day' ? a.activeMembers : period === 'week' ? (source.weeks.get(currentKey) ?? 0) : (source.months.get(currentKey) ?? 0);
    const purchasers = period === 'day' ? a.purchasersDay : period === 'week' ? a.purchasersWeek : a.purchasersMonth;
    const repeatPurchasers = period === 'day' ? a.repeatPurchasersDay : period === 'week' ? a.repeatPurchasersWeek : a.repeatPurchasersMonth;
    const churned = a.unenrollments - a.unenrolledInactive + a.lapsed;
    const engagedEnd = members - inactive;
    const withoutOrders = a.orders - a.redeemedOrders;
    const withoutRevenue = a.revenueMinor - a.redeemedRevenueMinor;
    const plans = new Set([...Object.keys(a.paid), ...paidMembers.keys()]);
    rows.push({
      period: periodLabel(currentKey, period),
      orders: a.orders,
      revenueMinor: a.revenueMinor,
      averageOrderMinor: average(a.revenueMinor, a.orders),
      ordersWithPoints: a.redeemedOrders,
      revenueWithPointsMinor: a.redeemedRevenueMinor,
      averageOrderWithPointsMinor: average(a.redeemedRevenueMinor, a.redeemedOrders),
      ordersWithoutPoints: withoutOrders,
      revenueWithoutPointsMinor: withoutRevenue,
      averageOrderWithoutPointsMinor: average(withoutRevenue, withoutOrders),
      returns: a.returns,
      returnedMinor: a.returnedMinor,
      returnRate: ratio(a.returns, a.orders),
      activeMembers,
      orderFrequency: ratio(a.orders, activeMembers),
      purchasers,
      repeatPurchasers,
      repeatPurchaseRate: ratio(repeatPurchasers, purchasers),
      members,
      enrollments: a.enrollments,
      unenrollments: a.unenrollments,
      lapsed: a.lapsed,
      reactivated: a.reactivated,
      inactiveMembers: inactive,
      churned,
      churnRate: ratio(churned, engagedStart),
      retentionRate: ratio(engagedEnd - a.enrollments - a.reactivated, engagedStart),
      paidMemberships: [...plans].sort().map((planId) => {
        const counters = a.paid[planId];
        return {
          planId,
          members: paidMembers.get(planId) ?? 0,
          joined: counters?.joined ?? 0,
          renewed: counters?.renewed ?? 0,
          switched: counters?.switched ?? 0,
          lapsed: counters?.lapsed ?? 0,
          cancelled: counters?.cancelled ?? 0,
          feesMinor: counters?.feesMinor ?? 0,
        };
      }),
      donations: Object.entries(a.donations)
        .sort(([left], [right]) => left.localeCompare(right))
        .map(([causeId, totals]) => {
          const currency = program.causeCurrencies?.get(causeId) ?? '';
          const value = program.pointValues.get(currency);
          return { causeId, currency, points: totals.points, donations: totals.donations, valueMinor: value === undefined ? 0 : Math.floor((totals.points * value.minor) / value.perPoints) };
        }),
      badges: Object.fromEntries(Object.entries(a.badges).filter(([, count]) => count !== 0).sort(([left], [right]) => left.localeCompare(right))),
    });
  };
  for (let day = firstDay; day <= lastDay; day++) {
    const key = periodKeyOfDay(day, period, offset);
    if (key !== currentKey) {
      flush();
      currentKey = key;
      accumulated = emptyDay();
      engagedStart = members - inactive;
    }
    const counters = source.days.get(day);
    if (counters !== undefined) {
      mergeDay(accumulated, counters);
      addRunning(counters);
    }
  }
  flush();
  return rows;
}
