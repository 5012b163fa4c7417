import { parseArgs } from 'node:util';
import { ApiClient, CommandError, CONNECTION_HELP, CONNECTION_OPTIONS, fail, formatNumber, processIo, type CommandIo } from './client.js';

export const REPORT_HELP = `usage: loyalty report [--period day|week|month] [--from <date>] [--to <date>] [--csv | --json]

KPIs per period from the engine's HTTP API (read role): points issued,
redeemed, expired, adjusted and clawed back, liability, active members,
enrollments, redemptions and redemption rate, per points currency.

options:
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
}

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
];

export async function reportCommand(args: readonly string[], io: CommandIo = processIo()): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, period: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, csv: { type: 'boolean' }, json: { type: 'boolean' } },
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
    if (values.csv) {
      query.set('format', 'csv');
      io.stdout((await client.call('GET', `/v1/reports/kpis?${query}`, { accept: 'text/csv' })).text);
      return 0;
    }
    const response = await client.call('GET', `/v1/reports/kpis?${query}`);
    if (values.json) {
      io.stdout(`${JSON.stringify(response.json(), null, 2)}\n`);
      return 0;
    }
    const body = response.json<{ period: string; from: string; to: string; rows: Row[] }>();
    io.stdout(`KPIs per ${body.period}, ${body.from} to ${body.to}\n${table(body.rows)}`);
    return 0;
  } catch (error) {
    return fail(error, io);
  }
}

function table(rows: readonly Row[]): string {
  if (rows.length === 0) return '(no data)\n';
  const cells = rows.map((row) => COLUMNS.map(([, cell]) => cell(row)));
  const widths = COLUMNS.map(([title], index) => Math.max(title.length, ...cells.map((row) => row[index]!.length)));
  const line = (values: readonly string[]) => values.map((value, index) => (index < 2 ? value.padEnd(widths[index]!) : value.padStart(widths[index]!))).join('  ');
  return `${[line(COLUMNS.map(([title]) => title)), ...cells.map(line)].join('\n')}\n`;
}
