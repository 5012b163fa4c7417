import { globalBudgetLimits } from '../domain/ports.js';
import { buildReport, type ReportSource } from '../reports/report.js';
import type { ProgramManager, ReportReader } from './context.js';

/**
 * KPIs from the store's counters, at the active program's UTC offset and point
 * values. Read straight from LMDB, so any thread with the store open can
 * answer them (the API thread does).
 */
export function storeReportReader(store: { reportSource(): ReportSource }, programs: Pick<ProgramManager, 'active'>): ReportReader {
  return {
    kpis: (period, fromMs, toMs) => {
      const active = programs.active();
      return buildReport(
        store.reportSource(),
        {
          utcOffsetMinutes: active.utcOffsetMinutes,
          pointValues: new Map(active.currencies.flatMap((currency) => (currency.value === undefined ? [] : [[currency.id, currency.value] as const]))),
          promotionBudgets: new Map(Object.entries(globalBudgetLimits(active))),
        },
        period,
        fromMs,
        toMs,
      );
    },
  };
}
