import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { dayRangeOf, instancesInBucket, KpiAggregationError, KpiAggregator, kpiReportSource, type KpiAggregate } from '../cluster/kpi-aggregation.js';
import type { Settings } from '../config/settings.js';
import { assert } from '../domain/assert.js';
import { globalBudgetLimits } from '../domain/ports.js';
import type { Program } from '../domain/program.js';
import { buildProgramReport, buildReport, type ReportProgramInfo, type ReportSource } from '../reports/report.js';
import type { AggregatedReport, ClusterReports, ProgramManager, ReportPeriod, ReportReader } from './context.js';
import { ApiError } from './errors.js';

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

// ---- cluster mode: reports summed across instances ----

/**
 * How long a report waits for every expected instance before it is answered
 * partial: KpiAggregator's default. Every instance answering ends the wait at
 * once (a year of a busy program over 3 instances: ~22-38 ms median,
 * docs/cluster.md), so this is only what a report costs when an instance is
 * down, and it must stay well under a client's or proxy's timeout.
 */
export const REPORT_AGGREGATION_TIMEOUT_MS = 2_000;
/**
 * Aggregations in flight on one API thread. Each one makes every instance
 * walk its KPI records (each responder serves at most 4 asynchronous reads)
 * and holds every instance's reply here until summed (up to 32 MiB each), so a
 * burst of report requests is refused (OVERLOADED) rather than queued.
 */
export const REPORT_AGGREGATIONS_IN_FLIGHT_MAX = 4;
const REPORT_RETRY_AFTER = { 'retry-after': '1' } as const;

export interface ClusterReportReaderOptions {
  /** A KpiAggregator whose expected set is the KPI holders bucket (src/api/worker.ts). */
  readonly aggregator: Pick<KpiAggregator, 'aggregate'>;
  readonly programs: Pick<ProgramManager, 'active'>;
  /** Default REPORT_AGGREGATIONS_IN_FLIGHT_MAX. */
  readonly inFlightMax?: number;
  /** Every aggregate that is not complete, with its failures' codes and messages (the report names the instances only): for the log. */
  readonly onPartial?: (aggregate: KpiAggregate) => void;
}

/**
 * The report routes' reader in cluster mode: the same rows as
 * storeReportReader, built from every KPI holder's counters of the report's
 * days (one `<prefix>.svc.kpis.scatter` request per report, this instance's
 * own responder included), with whether every holder answered.
 */
export function clusterReportReader(options: ClusterReportReaderOptions): ClusterReports {
  const inFlightMax = options.inFlightMax ?? REPORT_AGGREGATIONS_IN_FLIGHT_MAX;
  assert(Number.isInteger(inFlightMax) && inFlightMax >= 1, 'inFlightMax must be a positive integer');
  let inFlight = 0;
  const report = async <Row>(
    build: (source: ReportSource, info: ReportProgramInfo, period: ReportPeriod, fromMs: number, toMs: number) => Row[],
    period: ReportPeriod,
    fromMs: number,
    toMs: number,
  ): Promise<AggregatedReport<Row>> => {
    if (inFlight >= inFlightMax) throw new ApiError('OVERLOADED', `${inFlight} KPI reports are being summed across instances on this instance, at most ${inFlightMax}: ask again shortly`, undefined, REPORT_RETRY_AFTER);
    // One program for the days asked for and the rows built: an activation in between must not shift the offset.
    const info = reportProgramInfo(options.programs.active());
    inFlight += 1;
    let aggregate: KpiAggregate;
    try {
      aggregate = await options.aggregator.aggregate(dayRangeOf(fromMs, toMs, info.utcOffsetMinutes));
    } catch (error) {
      throw reportAggregationError(error);
    } finally {
      inFlight -= 1;
    }
    if (!aggregate.complete) options.onPartial?.(aggregate);
    return {
      rows: build(kpiReportSource(aggregate), info, period, fromMs, toMs),
      complete: aggregate.complete,
      answered: aggregate.answered,
      missing: aggregate.missing,
      failed: aggregate.failed.map((failure) => failure.instanceId),
      uncoveredPartitions: aggregate.uncovered,
      overlappingPartitions: aggregate.overlapping,
    };
  };
  return {
    kpis: (period, fromMs, toMs) => report(buildReport, period, fromMs, toMs),
    programKpis: (period, fromMs, toMs) => report(buildProgramReport, period, fromMs, toMs),
  };
}

/**
 * The cluster reader as the API thread wires it (src/api/worker.ts): a
 * KpiAggregator on the thread's NATS connection whose expected set is the
 * KPI holders bucket, read at every report (an instance registers there
 * before its first KPI commit and stays after it stops: counters it kept
 * per actor, from before KPIs were kept per partition, stay on its disk),
 * and which checks that every partition's counters are in exactly one reply
 * (each instance answers for the partitions it consumes).
 */
export async function openClusterReports(
  nc: NatsConnection,
  settings: Pick<Settings, 'subjectPrefix' | 'kpiHoldersBucket' | 'partitions'>,
  programs: Pick<ProgramManager, 'active'>,
  options: { readonly timeoutMs?: number; readonly inFlightMax?: number; readonly onPartial?: (aggregate: KpiAggregate) => void } = {},
): Promise<ClusterReports> {
  // The engine's main thread created the bucket and registered this instance before it started the API thread.
  const holders = await new Kvm(nc).open(settings.kpiHoldersBucket);
  const aggregator = new KpiAggregator(nc, {
    subjectPrefix: settings.subjectPrefix,
    expected: () => instancesInBucket(holders),
    // KPI counters are kept per partition in cluster mode and move with it: each partition's are answered by its owner.
    partitions: settings.partitions,
    timeoutMs: options.timeoutMs ?? REPORT_AGGREGATION_TIMEOUT_MS,
  });
  return clusterReportReader({
    aggregator,
    programs,
    ...(options.inFlightMax !== undefined ? { inFlightMax: options.inFlightMax } : {}),
    ...(options.onPartial !== undefined ? { onPartial: options.onPartial } : {}),
  });
}

/**
 * What the aggregator throws (before any instance was asked, or when it
 * could not ask) as the API's errors. Statuses as KPI_AGGREGATION_CODES:
 * RANGE_TOO_LARGE keeps its code and 413; a request that could not be sent,
 * or an expected set that could not be read, leaves no counters at all, so
 * it is the report's REPORT_INCOMPLETE (503, like REQUEST_FAILED).
 */
export function reportAggregationError(error: unknown): unknown {
  if (!(error instanceof KpiAggregationError)) return error;
  const details = { aggregationCode: error.code };
  switch (error.code) {
    case 'RANGE_TOO_LARGE':
      return new ApiError('RANGE_TOO_LARGE', `querystring.from: ${error.message} (cluster mode: a report sums every instance's counters of its days, asked for in one request)`, details);
    case 'VALIDATION_FAILED':
      return new ApiError('VALIDATION_FAILED', `querystring.from: ${error.message}`, { ...details, issues: [{ field: 'querystring.from', message: error.message }] });
    case 'REQUEST_FAILED':
      return new ApiError('REPORT_INCOMPLETE', `no instance's KPI counters could be read: ${error.message}`, { ...details, missing: [], failed: [] }, REPORT_RETRY_AFTER);
    default:
      return new ApiError('INTERNAL_ERROR', `the KPI aggregation failed: ${error.message}`, details);
  }
}

/** The retry hint of a report that no instance answered (REPORT_INCOMPLETE). */
export function reportRetryAfter(): Readonly<Record<string, string>> {
  return REPORT_RETRY_AFTER;
}
