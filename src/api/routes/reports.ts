import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiContext, ReportRow } from '../context.js';
import { csvRow } from '../csv.js';
import { ApiError, errorBodySchema } from '../errors.js';
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
] as const;

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

export function registerReportRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get(
    '/v1/reports/kpis',
    {
      config: { role: 'read' },
      schema: {
        tags: ['reports'],
        summary: 'KPIs per period: points issued, redeemed, expired, liability, members, tiers, promotions',
        querystring: kpisQuery,
        produces: ['application/json', 'text/csv'],
        response: {
          200: z.object({ period: z.enum(['day', 'week', 'month']), from: z.string(), to: z.string(), rows: z.array(rowSchema) }),
          400: errorBodySchema,
        },
      },
    },
    async (request, reply) => {
      const query = request.query as z.output<typeof kpisQuery>;
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
      const rows = ctx.reports.kpis(period, fromMs, toMs);
      const accept = String(request.headers.accept ?? '');
      const format = query.format ?? (accept.includes('text/csv') ? 'csv' : 'json');
      if (format === 'csv') return reply.type('text/csv; charset=utf-8').send(kpisCsv(rows));
      return { period, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), rows };
    },
  );
}
