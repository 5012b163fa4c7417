import { globalBudgetLimits } from '../domain/ports.js';
import type { Program } from '../domain/program.js';
import { buildProgramReport, buildReport, type ReportProgramInfo, type ReportSource } from '../reports/report.js';
import type { ProgramManager, ReportReader } from './context.js';

/**
 * KPIs from the store's counters, at the active program's UTC offset and point
 * values. Read straight from LMDB, so any thread with the store open can
 * answer them (the API thread does).
 */
export function storeReportReader(store: { reportSource(): ReportSource }, programs: Pick<ProgramManager, 'active'>): ReportReader {
  return {
    kpis: (period, fromMs, toMs) => buildReport(store.reportSource(), reportProgramInfo(programs.active()), period, fromMs, toMs),
    programKpis: (period, fromMs, toMs) => buildProgramReport(store.reportSource(), reportProgramInfo(programs.active()), period, fromMs, toMs),
  };
}

/** What the report needs of the active program: its offset, point values, budgets, expected breakage, causes. */
export function reportProgramInfo(active: Program): ReportProgramInfo {
  const firstCurrency = active.earn.currency ?? active.currencies[0]!.id;
  return {
    utcOffsetMinutes: active.utcOffsetMinutes,
    pointValues: new Map(active.currencies.flatMap((currency) => (currency.value === undefined ? [] : [[currency.id, currency.value] as const]))),
    promotionBudgets: new Map(Object.entries(globalBudgetLimits(active))),
    expectedBreakagePercent: new Map(
      active.currencies.flatMap((currency) => (currency.expectedBreakagePercent === undefined ? [] : [[currency.id, currency.expectedBreakagePercent] as const])),
    ),
    causeCurrencies: new Map((active.donations?.causes ?? []).map((cause) => [cause.id, cause.currency ?? firstCurrency] as const)),
  };
}
