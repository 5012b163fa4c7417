import { parseArgs } from 'node:util';
import { ApiClient, CommandError, CONNECTION_HELP, CONNECTION_OPTIONS, fail, formatNumber, processIo, type CommandIo } from './client.js';

export const REPORT_HELP = `usage: loyalty report [--program] [--period day|week|month] [--from <date>] [--to <date>] [--csv | --json]

KPIs per period from the engine's HTTP API (read role): points issued,
redeemed, expired, adjusted and clawed back, liability and liability net of
breakage, breakage rate, active members, enrollments, redemptions and
redemption rate, per points currency. With --program: orders, revenue,
average order value with and without redeemed points, order frequency,
return rate, repeat-purchase rate, members, churn and retention (and, in
--csv and --json, paid memberships, donations per cause and badges).

options:
  --program                 the program KPIs (GET /v1/reports/program) instead of the points KPIs
  --period day|week|month   default day
  --from <date>             inclusive, ISO 8601 (default: 30 days, 12 weeks or a year before --to)
  --to <date>               exclusive (default now)
  --csv                     CSV with a header row (tiers and promotions included)
  --json                    the API's JSON
${CONNECTION_HELP}

exit codes: 0 ok, 1 the API failed, 2 bad usage`;

interface Row {
  period: string;
  currency: string;
  pointsIssued: number;
  pointsRedeemed: number;
  pointsExpired: number;
  pointsAdjusted: number;
  liabilityPoints: number;
  activeMembers: number;
  enrollments: number;
  redemptionRate: number;
  breakageRate?: number;
  liabilityNetPoints?: number;
}

interface ProgramRow {
  period: string;
  orders: number;
  revenueMinor: number;
  averageOrderMinor: number;
  averageOrderWithPointsMinor: number;
  averageOrderWithoutPointsMinor: number;
  orderFrequency: number;
  returnRate: number;
  repeatPurchaseRate: number;
  members: number;
  inactiveMembers: number;
  churned: number;
  churnRate: number;
  retentionRate: number;
}

const percent = (value: number | undefined): string => ((value ?? 0) * 100).toFixed(1);
const money = (minor: number): string => (minor / 100).toFixed(2);

const COLUMNS: readonly [string, (row: Row) => string][] = [
  ['period', (row) => row.period],
  ['currency', (row) => row.currency],
  ['issued', (row) => formatNumber(row.pointsIssued)],
  ['redeemed', (row) => formatNumber(row.pointsRedeemed)],
  ['expired', (row) => formatNumber(row.pointsExpired)],
  ['adjusted', (row) => formatNumber(row.pointsAdjusted)],
  ['liability', (row) => formatNumber(row.liabilityPoints)],
  ['active', (row) => formatNumber(row.activeMembers)],
  ['enrolled', (row) => formatNumber(row.enrollments)],
  ['redeem %', (row) => (row.redemptionRate * 100).toFixed(1)],
  ['breakage %', (row) => percent(row.breakageRate)],
  ['net liability', (row) => formatNumber(row.liabilityNetPoints ?? 0)],
];

const PROGRAM_COLUMNS: readonly [string, (row: ProgramRow) => string][] = [
  ['period', (row) => row.period],
  ['orders', (row) => formatNumber(row.orders)],
  ['revenue', (row) => money(row.revenueMinor)],
  ['AOV', (row) => money(row.averageOrderMinor)],
  ['AOV points', (row) => money(row.averageOrderWithPointsMinor)],
  ['AOV no points', (row) => money(row.averageOrderWithoutPointsMinor)],
  ['orders/active', (row) => row.orderFrequency.toFixed(2)],
  ['return %', (row) => percent(row.returnRate)],
  ['repeat %', (row) => percent(row.repeatPurchaseRate)],
  ['members', (row) => formatNumber(row.members)],
  ['inactive', (row) => formatNumber(row.inactiveMembers)],
  ['churned', (row) => formatNumber(row.churned)],
  ['churn %', (row) => percent(row.churnRate)],
  ['retention %', (row) => percent(row.retentionRate)],
];

export async function reportCommand(args: readonly string[], io: CommandIo = processIo()): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        ...CONNECTION_OPTIONS,
        program: { type: 'boolean' },
        period: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        csv: { type: 'boolean' },
        json: { type: 'boolean' },
      },
    });
    if (values.help) {
      io.stdout(`${REPORT_HELP}\n`);
      return 0;
    }
    if (positionals.length > 0) throw new CommandError(`unexpected argument ${positionals[0]}\n\n${REPORT_HELP}`, 2);
    if (values.period !== undefined && !['day', 'week', 'month'].includes(values.period)) throw new CommandError('--period must be day, week or month', 2);
    if (values.csv && values.json) throw new CommandError('--csv and --json exclude each other', 2);
    const client = ApiClient.from(values, io);
    const query = new URLSearchParams();
    if (values.period !== undefined) query.set('period', values.period);
    if (values.from !== undefined) query.set('from', values.from);
    if (values.to !== undefined) query.set('to', values.to);
    const path = values.program ? '/v1/reports/program' : '/v1/reports/kpis';
    if (values.csv) {
      query.set('format', 'csv');
      io.stdout((await client.call('GET', `${path}?${query}`, { accept: 'text/csv' })).text);
      return 0;
    }
    const response = await client.call('GET', `${path}?${query}`);
    if (values.json) {
      io.stdout(`${JSON.stringify(response.json(), null, 2)}\n`);
      return 0;
    }
    if (values.program) {
      const body = response.json<{ period: string; from: string; to: string; rows: ProgramRow[] }>();
      io.stdout(`Program KPIs per ${body.period}, ${body.from} to ${body.to}\n${table(body.rows, PROGRAM_COLUMNS, 1)}`);
      return 0;
    }
    const body = response.json<{ period: string; from: string; to: string; rows: Row[] }>();
    io.stdout(`KPIs per ${body.period}, ${body.from} to ${body.to}\n${table(body.rows, COLUMNS, 2)}`);
    return 0;
  } catch (error) {
    return fail(error, io);
  }
}

function table<T>(rows: readonly T[], columns: readonly [string, (row: T) => string][], leftAligned: number): string {
  if (rows.length === 0) return '(no data)\n';
  const cells = rows.map((row) => columns.map(([, cell]) => cell(row)));
  const widths = columns.map(([title], index) => Math.max(title.length, ...cells.map((row) => row[index]!.length)));
  const line = (values: readonly string[]) => values.map((value, index) => (index < leftAligned ? value.padEnd(widths[index]!) : value.padStart(widths[index]!))).join('  ');
  return `${[line(columns.map(([title]) => title)), ...cells.map(line)].join('\n')}\n`;
}
