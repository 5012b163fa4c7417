import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { ProgramReportRow } from '../../reports/report.js';
import type { AggregatedReport, ApiContext, ReportPeriod, ReportRow } from '../context.js';
import { csvRow } from '../csv.js';
import { ApiError, errorBodySchema } from '../errors.js';
import { reportRetryAfter } from '../report-reader.js';
import { instantMs, instantSchema } from '../schema.js';

/** KPIs per day, week or month, as JSON or CSV. */

const DAY_MS = 86_400_000;
/** Periods one request may cover (days for 'day', weeks for 'week', ...). */
const PERIODS_MAX = { day: 1_000, week: 520, month: 240 } as const;
const DEFAULT_SPAN_DAYS = { day: 30, week: 12 * 7, month: 365 } as const;

const kpisQuery = z
  .object({
    period: z.enum(['day', 'week', 'month']).optional().meta({ description: 'default day' }),
    from: instantSchema.optional().meta({ description: 'inclusive; default: to minus 30 days (day), 12 weeks (week) or a year (month)' }),
    to: instantSchema.optional().meta({ description: 'exclusive; default now' }),
    format: z.enum(['json', 'csv']).optional().meta({ description: 'default from Accept (text/csv → csv), else json' }),
  })
  .strict();

const rowSchema = z.object({
  period: z.string(),
  currency: z.string(),
  pointsIssued: z.number(),
  pointsRedeemed: z.number(),
  pointsExpired: z.number(),
  pointsAdjusted: z.number(),
  pointsClawedBack: z.number(),
  liabilityPoints: z.number(),
  liabilityMinor: z.number(),
  activeMembers: z.number(),
  enrollments: z.number(),
  redemptions: z.number(),
  redemptionRate: z.number(),
  breakageRate: z.number().meta({ description: 'pointsExpired ÷ pointsIssued of the period' }),
  breakageRateLifetime: z.number().meta({ description: 'expired ÷ issued up to the period end' }),
  liabilityNetPoints: z.number().meta({ description: 'liability net of expected breakage (expectedBreakagePercent, else breakageRateLifetime)' }),
  liabilityNetMinor: z.number(),
  tierDistribution: z.record(z.string(), z.number()),
  tierMovements: z.object({ upgrades: z.number(), downgrades: z.number() }),
  promotions: z.array(z.object({ promotionId: z.string(), points: z.number(), uses: z.number(), budgetPoints: z.number().optional(), budgetUses: z.number().optional() })),
});

const SCALAR_COLUMNS = [
  'period',
  'currency',
  'pointsIssued',
  'pointsRedeemed',
  'pointsExpired',
  'pointsAdjusted',
  'pointsClawedBack',
  'liabilityPoints',
  'liabilityMinor',
  'activeMembers',
  'enrollments',
  'redemptions',
  'redemptionRate',
  'breakageRate',
  'breakageRateLifetime',
  'liabilityNetPoints',
  'liabilityNetMinor',
] as const;

const programRowSchema = z.object({
  period: z.string(),
  orders: z.number(),
  revenueMinor: z.number(),
  averageOrderMinor: z.number(),
  ordersWithPoints: z.number().meta({ description: 'orders a redemption named (redemption.orderId)' }),
  revenueWithPointsMinor: z.number(),
  averageOrderWithPointsMinor: z.number(),
  ordersWithoutPoints: z.number(),
  revenueWithoutPointsMinor: z.number(),
  averageOrderWithoutPointsMinor: z.number(),
  returns: z.number(),
  returnedMinor: z.number(),
  returnRate: z.number().meta({ description: 'returns ÷ orders' }),
  activeMembers: z.number(),
  orderFrequency: z.number().meta({ description: 'orders ÷ activeMembers' }),
  purchasers: z.number(),
  repeatPurchasers: z.number(),
  repeatPurchaseRate: z.number(),
  members: z.number(),
  enrollments: z.number(),
  unenrollments: z.number(),
  lapsed: z.number(),
  reactivated: z.number(),
  inactiveMembers: z.number(),
  churned: z.number(),
  churnRate: z.number(),
  retentionRate: z.number(),
  paidMemberships: z.array(
    z.object({
      planId: z.string(),
      members: z.number(),
      joined: z.number(),
      renewed: z.number(),
      switched: z.number(),
      lapsed: z.number(),
      cancelled: z.number(),
      feesMinor: z.number(),
    }),
  ),
  donations: z.array(z.object({ causeId: z.string(), currency: z.string(), points: z.number(), donations: z.number(), valueMinor: z.number() })),
  badges: z.record(z.string(), z.number()),
});

const PROGRAM_SCALAR_COLUMNS = [
  'period',
  'orders',
  'revenueMinor',
  'averageOrderMinor',
  'ordersWithPoints',
  'revenueWithPointsMinor',
  'averageOrderWithPointsMinor',
  'ordersWithoutPoints',
  'revenueWithoutPointsMinor',
  'averageOrderWithoutPointsMinor',
  'returns',
  'returnedMinor',
  'returnRate',
  'activeMembers',
  'orderFrequency',
  'purchasers',
  'repeatPurchasers',
  'repeatPurchaseRate',
  'members',
  'enrollments',
  'unenrollments',
  'lapsed',
  'reactivated',
  'inactiveMembers',
  'churned',
  'churnRate',
  'retentionRate',
] as const;

/** CSV of the program KPIs: plans become `paid:<id>:<figure>` columns, causes `donated:<id>` (points), badges `badge:<id>`. */
export function programKpisCsv(rows: readonly ProgramReportRow[]): string {
  const plans = [...new Set(rows.flatMap((row) => row.paidMemberships.map((plan) => plan.planId)))].sort();
  const causes = [...new Set(rows.flatMap((row) => row.donations.map((cause) => cause.causeId)))].sort();
  const badges = [...new Set(rows.flatMap((row) => Object.keys(row.badges)))].sort();
  const planFigures = ['members', 'joined', 'renewed', 'switched', 'lapsed', 'cancelled', 'feesMinor'] as const;
  let text = csvRow([
    ...PROGRAM_SCALAR_COLUMNS,
    ...plans.flatMap((plan) => planFigures.map((figure) => `paid:${plan}:${figure}`)),
    ...causes.map((cause) => `donated:${cause}`),
    ...badges.map((badge) => `badge:${badge}`),
  ]);
  for (const row of rows) {
    text += csvRow([
      ...PROGRAM_SCALAR_COLUMNS.map((column) => row[column]),
      ...plans.flatMap((planId) => {
        const plan = row.paidMemberships.find((item) => item.planId === planId);
        return planFigures.map((figure) => plan?.[figure] ?? 0);
      }),
      ...causes.map((causeId) => row.donations.find((item) => item.causeId === causeId)?.points ?? 0),
      ...badges.map((badgeId) => row.badges[badgeId] ?? 0),
    ]);
  }
  return text;
}

/** CSV with a header row; tiers become `tier:<id>` columns, promotions one `id=points/uses` list. */
export function kpisCsv(rows: readonly ReportRow[]): string {
  const tiers = [...new Set(rows.flatMap((row) => Object.keys(row.tierDistribution)))].sort();
  let text = csvRow([...SCALAR_COLUMNS, 'tierUpgrades', 'tierDowngrades', ...tiers.map((tier) => `tier:${tier}`), 'promotions']);
  for (const row of rows) {
    text += csvRow([
      ...SCALAR_COLUMNS.map((column) => row[column]),
      row.tierMovements.upgrades,
      row.tierMovements.downgrades,
      ...tiers.map((tier) => row.tierDistribution[tier] ?? 0),
      row.promotions.map((promotion) => `${promotion.promotionId}=${promotion.points}/${promotion.uses}`).join(';'),
    ]);
  }
  return text;
}

/** The period and range of a report request, checked (the same rules for both reports). */
function reportRange(ctx: ApiContext, query: z.output<typeof kpisQuery>): { period: ReportPeriod; fromMs: number; toMs: number } {
  const period = query.period ?? 'day';
  // A date alone is that day at the program's offset, the days the report is kept in.
  const offset = ctx.programs.active().utcOffsetMinutes;
  const toMs = query.to === undefined ? Date.now() : instantMs(query.to, offset);
  const fromMs = query.from === undefined ? toMs - DEFAULT_SPAN_DAYS[period] * DAY_MS : instantMs(query.from, offset);
  if (fromMs >= toMs) throw new ApiError('VALIDATION_FAILED', 'querystring.to: must be after from', { issues: [{ field: 'querystring.to', message: 'must be after from' }] });
  const spanDays = (toMs - fromMs) / DAY_MS;
  const periods = period === 'day' ? spanDays : period === 'week' ? spanDays / 7 : spanDays / 30.4;
  if (periods > PERIODS_MAX[period]) {
    const message = `at most ${PERIODS_MAX[period]} ${period}s per request`;
    throw new ApiError('VALIDATION_FAILED', `querystring.from: ${message}`, { issues: [{ field: 'querystring.from', message }] });
  }
  return { period, fromMs, toMs };
}

/** Cluster mode: a report that does not hold every KPI holder's counters says so in this header (CSV has no other place for it). */
export const HEADER_REPORT_PARTIAL = 'Loyalty-Report-Partial';

/** The body's completeness fields: `complete`, and when false the instances whose counters are not in it. */
const coverageSchema = {
  complete: z.boolean().meta({ description: 'false in cluster mode when an instance holding KPI counters did not answer (missing) or answered with an error (failed): the figures then leave its counters out' }),
  missing: z.array(z.string()).optional().meta({ description: 'when not complete: instance ids that did not answer in time' }),
  failed: z.array(z.string()).optional().meta({ description: 'when not complete: instance ids whose answer was an error or was refused (the log has why)' }),
  uncoveredPartitions: z.array(z.number().int()).optional().meta({ description: 'when not complete: partitions whose counters no instance answered for (between two owners during a handover: ask again)' }),
  overlappingPartitions: z.array(z.number().int()).optional().meta({ description: 'when not complete: partitions whose counters more than one instance answered for (counted twice in the figures)' }),
};

/**
 * A cluster report's completeness, as the response says it. The status:
 * - some instances answered, not all: 200 with `complete: false`, the ids in
 *   `missing`/`failed` and the Loyalty-Report-Partial header. The figures are
 *   true sums of the counters that came, and a dashboard can show them marked
 *   partial; a 5xx would make clients and proxies drop or retry them (and
 *   every retry waits the aggregation timeout again while the instance is down).
 * - nobody answered (this instance's own responder included): 503
 *   REPORT_INCOMPLETE. Rows of zeros are not a report, and 200 would let a
 *   client that does not read `complete` take them for one; the connection to
 *   NATS is the likely cause, and retrying later is the right move.
 */
function coverageOf(
  reply: FastifyReply,
  report: AggregatedReport<unknown>,
): { complete: boolean; missing?: string[]; failed?: string[]; uncoveredPartitions?: number[]; overlappingPartitions?: number[] } {
  if (report.complete) return { complete: true };
  const missing = [...report.missing];
  const failed = [...report.failed];
  if (report.answered.length === 0) {
    throw new ApiError('REPORT_INCOMPLETE', `no instance holding KPI counters answered: missing ${missing.join(', ') || 'none'}; failed ${failed.join(', ') || 'none'}`, { missing, failed }, reportRetryAfter());
  }
  const uncovered = [...report.uncoveredPartitions];
  const overlapping = [...report.overlappingPartitions];
  const partitions = `${uncovered.length > 0 ? `; uncovered=${uncovered.join(',')}` : ''}${overlapping.length > 0 ? `; overlapping=${overlapping.join(',')}` : ''}`;
  reply.header(HEADER_REPORT_PARTIAL, `missing=${missing.join(',')}; failed=${failed.join(',')}${partitions}`);
  return {
    complete: false,
    missing,
    failed,
    ...(uncovered.length > 0 ? { uncoveredPartitions: uncovered } : {}),
    ...(overlapping.length > 0 ? { overlappingPartitions: overlapping } : {}),
  };
}

function wantsCsv(query: z.output<typeof kpisQuery>, accept: unknown): boolean {
  return (query.format ?? (String(accept ?? '').includes('text/csv') ? 'csv' : 'json')) === 'csv';
}

export function registerReportRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get(
    '/v1/reports/kpis',
    {
      config: { role: 'read' },
      schema: {
        tags: ['reports'],
        summary: 'KPIs per period and points currency: points issued, redeemed, expired, liability, breakage, members, tiers, promotions',
        querystring: kpisQuery,
        produces: ['application/json', 'text/csv'],
        response: {
          200: z.object({ period: z.enum(['day', 'week', 'month']), from: z.string(), to: z.string(), ...coverageSchema, rows: z.array(rowSchema) }),
          400: errorBodySchema,
          413: errorBodySchema,
          503: errorBodySchema,
        },
      },
    },
    async (request, reply) => {
      const query = request.query as z.output<typeof kpisQuery>;
      const { period, fromMs, toMs } = reportRange(ctx, query);
      const csv = wantsCsv(query, request.headers.accept);
      const range = { period, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString() };
      if (ctx.clusterReports === undefined) {
        // A single instance: its store holds every counter, read synchronously as before.
        const rows = ctx.reports.kpis(period, fromMs, toMs);
        if (csv) return reply.type('text/csv; charset=utf-8').send(kpisCsv(rows));
        return { ...range, complete: true, rows };
      }
      const report = await ctx.clusterReports.kpis(period, fromMs, toMs);
      const coverage = coverageOf(reply, report);
      if (csv) return reply.type('text/csv; charset=utf-8').send(kpisCsv(report.rows));
      return { ...range, ...coverage, rows: report.rows };
    },
  );
  app.get(
    '/v1/reports/program',
    {
      config: { role: 'read' },
      schema: {
        tags: ['reports'],
        summary: 'Program KPIs per period: orders, revenue, average order value with and without redeemed points, frequency, returns, repeat purchases, churn and retention, paid memberships, donations, badges',
        querystring: kpisQuery,
        produces: ['application/json', 'text/csv'],
        response: {
          200: z.object({ period: z.enum(['day', 'week', 'month']), from: z.string(), to: z.string(), ...coverageSchema, rows: z.array(programRowSchema) }),
          400: errorBodySchema,
          413: errorBodySchema,
          503: errorBodySchema,
        },
      },
    },
    async (request, reply) => {
      const query = request.query as z.output<typeof kpisQuery>;
      const { period, fromMs, toMs } = reportRange(ctx, query);
      const csv = wantsCsv(query, request.headers.accept);
      const range = { period, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString() };
      if (ctx.clusterReports === undefined) {
        const rows = ctx.reports.programKpis(period, fromMs, toMs);
        if (csv) return reply.type('text/csv; charset=utf-8').send(programKpisCsv(rows));
        return { ...range, complete: true, rows };
      }
      const report = await ctx.clusterReports.programKpis(period, fromMs, toMs);
      const coverage = coverageOf(reply, report);
      if (csv) return reply.type('text/csv; charset=utf-8').send(programKpisCsv(report.rows));
      return { ...range, ...coverage, rows: report.rows };
    },
  );
}
