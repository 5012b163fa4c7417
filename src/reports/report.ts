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
  const tiers = new Map<string, number>();
  const addRunning = (counters: DayCounters) => {
    for (const [currency, values] of Object.entries(counters.currencies)) liability.set(currency, (liability.get(currency) ?? 0) + values.liabilityDelta);
    for (const [tier, delta] of Object.entries(counters.tierDelta)) tiers.set(tier, (tiers.get(tier) ?? 0) + delta);
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
