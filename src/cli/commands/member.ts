import { parseArgs } from 'node:util';
import { ApiClient, CommandError, CONNECTION_HELP, CONNECTION_OPTIONS, day, fail, formatNumber, processIo, type CommandIo } from './client.js';

export const MEMBER_HELP = `usage: loyalty member <memberId> [options]

Shows a member's wallet (balances, pending and expiring points, tier progress,
vouchers) and their latest ledger entries, read from the engine's HTTP API
(read role).

options:
  --entries <n>        ledger entries to show, newest last (default 10, max 500)
  --from <date>        scan the ledger from this date (ISO 8601); default: all of it
  --json               print {"wallet", "ledger"} as JSON
${CONNECTION_HELP}

exit codes: 0 ok, 1 the API failed or the member is unknown, 2 bad usage`;

/** Pages scanned for the latest entries (500 each): a very long ledger needs --from. */
const LEDGER_PAGES_MAX = 20;

interface Wallet {
  memberId: string;
  status: string;
  tier: {
    id: string;
    name: string;
    since: string;
    basis: 'points' | 'spend';
    measure: number;
    periodEndsAt: string | null;
    next: { name: string; remaining: number } | null;
    keep: { threshold: number; remaining: number; by: string | null };
    grace: { until: string; targetTierId: string } | null;
  };
  currencies: {
    currency: string;
    spendable: number;
    pending: number;
    qualifying: number;
    debt: number;
    pendingReleases: { releaseAt: string; points: number }[];
    expiringByMonth: { period: string; points: number }[];
    expiring: { expiresAt: string; points: number }[];
  }[];
  vouchers: { code: string; benefitId: string; expiresAt: string }[];
}

interface LedgerEntry {
  seq: number;
  eventId: string;
  kind: string;
  balance: string;
  currency: string;
  points: number;
  ruleId: string;
  reason?: string;
  operator?: string;
  occurredAt: string;
}

export async function memberCommand(args: readonly string[], io: CommandIo = processIo()): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: { ...CONNECTION_OPTIONS, entries: { type: 'string' }, from: { type: 'string' }, json: { type: 'boolean' } },
    });
    if (values.help) {
      io.stdout(`${MEMBER_HELP}\n`);
      return 0;
    }
    const memberId = positionals[0];
    if (memberId === undefined || positionals.length > 1) throw new CommandError(`expected one member id\n\n${MEMBER_HELP}`, 2);
    const entries = Number(values.entries ?? 10);
    if (!Number.isInteger(entries) || entries < 1 || entries > 500) throw new CommandError('--entries must be an integer from 1 to 500', 2);
    const client = ApiClient.from(values, io);
    const member = encodeURIComponent(memberId);
    const wallet = (await client.call('GET', `/v1/members/${member}/wallet`)).json<Wallet>();
    const ledger = await latestEntries(client, member, entries, values.from);
    if (values.json) {
      io.stdout(`${JSON.stringify({ wallet, ledger: ledger.entries }, null, 2)}\n`);
      return 0;
    }
    io.stdout(renderMember(wallet, ledger.entries, ledger.truncated));
    return 0;
  } catch (error) {
    return fail(error, io);
  }
}

async function latestEntries(client: ApiClient, member: string, count: number, from: string | undefined): Promise<{ entries: LedgerEntry[]; truncated: boolean }> {
  let kept: LedgerEntry[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < LEDGER_PAGES_MAX; page++) {
    const query = new URLSearchParams({ limit: '500' });
    if (cursor !== null) query.set('cursor', cursor);
    if (from !== undefined) query.set('from', from);
    const body = (await client.call('GET', `/v1/members/${member}/ledger?${query}`)).json<{ entries: LedgerEntry[]; nextCursor: string | null }>();
    kept = [...kept, ...body.entries].slice(-count);
    cursor = body.nextCursor;
    if (cursor === null) return { entries: kept, truncated: false };
  }
  return { entries: kept, truncated: true };
}

export function renderMember(wallet: Wallet, entries: readonly LedgerEntry[], truncated: boolean): string {
  const lines: string[] = [];
  const tier = wallet.tier;
  const unit = tier.basis === 'spend' ? 'spend (minor units)' : 'qualifying points';
  lines.push(`${wallet.memberId}  ${wallet.status}`);
  lines.push(`tier      ${tier.name} since ${day(tier.since)}, ${formatNumber(tier.measure)} ${unit}${tier.periodEndsAt !== null ? ` this period (ends ${day(tier.periodEndsAt)})` : ''}`);
  if (tier.next !== null) lines.push(`          ${formatNumber(tier.next.remaining)} more to reach ${tier.next.name}`);
  if (tier.keep.remaining > 0) lines.push(`          ${formatNumber(tier.keep.remaining)} more to keep ${tier.name}${tier.keep.by !== null ? ` by ${day(tier.keep.by)}` : ''}`);
  if (tier.grace !== null) lines.push(`          in grace until ${day(tier.grace.until)}, then ${tier.grace.targetTierId}`);
  for (const currency of wallet.currencies) {
    lines.push(
      `${currency.currency.padEnd(9)} spendable ${formatNumber(currency.spendable)}, pending ${formatNumber(currency.pending)}, qualifying ${formatNumber(currency.qualifying)}${currency.debt > 0 ? `, debt ${formatNumber(currency.debt)}` : ''}`,
    );
    for (const release of currency.pendingReleases.slice(0, 5)) lines.push(`          ${formatNumber(release.points)} pending until ${day(release.releaseAt)}`);
    const expiring = currency.expiringByMonth.filter((month) => month.points > 0);
    if (expiring.length > 0) lines.push(`          expiring: ${expiring.map((month) => `${formatNumber(month.points)} in ${month.period}`).join(', ')}`);
  }
  if (wallet.vouchers.length > 0) {
    lines.push('vouchers');
    for (const voucher of wallet.vouchers) lines.push(`          ${voucher.code} (${voucher.benefitId}) until ${day(voucher.expiresAt)}`);
  }
  lines.push(`ledger    last ${entries.length} entries${truncated ? ' (scan stopped after 10,000: narrow with --from)' : ''}`);
  for (const entry of entries) {
    const sign = entry.points > 0 ? '+' : '';
    const why = [entry.ruleId, entry.reason, entry.operator === undefined ? undefined : `by ${entry.operator}`].filter((part) => part !== undefined && part !== '').join(', ');
    lines.push(`  #${String(entry.seq).padEnd(6)} ${entry.occurredAt.slice(0, 19).replace('T', ' ')}  ${entry.kind.padEnd(14)} ${entry.balance.padEnd(10)} ${`${sign}${formatNumber(entry.points)}`.padStart(9)} ${entry.currency}  ${entry.eventId}  ${why}`);
  }
  return `${lines.join('\n')}\n`;
}
