import type { CompiledProgram } from './compiled.js';
import { compiledOf } from './compiled.js';
import type { Program } from './program.js';
import type { LedgerBalance, LedgerEntry, MemberState } from './state.js';
import { tierMeasure } from './tier-measure.js';

/**
 * The ledger invariant, as a pure check for tests, audits and the replay
 * tool: given a member's state and every ledger entry they ever had (in
 * order), each balance equals the sum of its entries, the sequence is
 * 1..ledgerSeq without gaps, and the balances agree with the lots behind them.
 */

export interface InvariantReport {
  readonly ok: boolean;
  readonly problems: readonly string[];
}

const BALANCES: readonly LedgerBalance[] = ['spendable', 'pending', 'qualifying', 'debt'];

export function checkLedgerInvariant(
  state: MemberState,
  entries: readonly LedgerEntry[],
  program?: Program | CompiledProgram,
): InvariantReport {
  const problems: string[] = [];
  const sums = new Map<string, number>();
  entries.forEach((entry, index) => {
    if (entry.seq !== index + 1) problems.push(`entry ${index} has seq ${entry.seq}, expected ${index + 1}`);
    if (entry.memberId !== state.memberId) problems.push(`entry ${entry.seq} belongs to ${entry.memberId}`);
    if (!Number.isSafeInteger(entry.points) || entry.points === 0) problems.push(`entry ${entry.seq} has points ${entry.points}`);
    const key = `${entry.currency}/${entry.balance}`;
    sums.set(key, (sums.get(key) ?? 0) + entry.points);
  });
  if (entries.length !== state.ledgerSeq) problems.push(`ledgerSeq is ${state.ledgerSeq} but there are ${entries.length} entries`);
  const currencyIds = new Set<string>(Object.keys(state.currencies));
  for (const entry of entries) currencyIds.add(entry.currency);
  for (const currencyId of currencyIds) {
    const currency = Object.hasOwn(state.currencies, currencyId) ? state.currencies[currencyId] : undefined;
    for (const balance of BALANCES) {
      const expected = sums.get(`${currencyId}/${balance}`) ?? 0;
      const actual = currency?.[balance] ?? 0;
      if (expected !== actual) problems.push(`${currencyId} ${balance} is ${actual} but its entries sum to ${expected}`);
    }
    if (currency === undefined) continue;
    const lots = currency.lots.reduce((sum, lot) => sum + lot.points, 0);
    if (currency.spendable >= 0 && lots !== currency.spendable) problems.push(`${currencyId} spendable ${currency.spendable} but lots hold ${lots}`);
    if (currency.spendable < 0 && currency.lots.length > 0) problems.push(`${currencyId} is negative yet holds lots`);
    if (currency.lots.some((lot) => lot.points <= 0)) problems.push(`${currencyId} has an empty or negative lot`);
    const pending = currency.pendingLots.reduce((sum, lot) => sum + lot.points, 0);
    if (pending !== currency.pending) problems.push(`${currencyId} pending ${currency.pending} but pending lots hold ${pending}`);
    if (currency.debt < 0) problems.push(`${currencyId} debt is negative`);
    if (currency.debt > 0 && currency.lots.length > 0) problems.push(`${currencyId} owes ${currency.debt} yet holds lots`);
    if (currency.qualifying < 0) problems.push(`${currencyId} qualifying is negative`);
  }
  if (program !== undefined) {
    const compiled = compiledOf(program);
    if (compiled.tierBasis === 'points') {
      const qualifying = Object.hasOwn(state.currencies, compiled.tierCurrency) ? state.currencies[compiled.tierCurrency]!.qualifying : 0;
      const measure = tierMeasure(state);
      if (qualifying !== measure) problems.push(`qualifying ${compiled.tierCurrency} is ${qualifying} but the tier window holds ${measure}`);
    }
  }
  return { ok: problems.length === 0, problems };
}
