import type { LedgerEntry, MemberState } from '../../src/domain/state.js';

/**
 * What integration tests compare, read from a member's stored state and
 * ledger: the spendable points balance, the sum of its ledger entries, and the
 * spendable points each event added. One place to adapt when the state's
 * shape grows.
 */
export interface MemberView {
  readonly spendable: number;
  readonly ledgerSpendableSum: number;
  readonly pointsByEvent: Map<string, number>;
}

export function memberView(state: MemberState, ledger: readonly LedgerEntry[], currency = 'points'): MemberView {
  const spendable = state.currencies[currency]?.spendable ?? 0;
  let ledgerSpendableSum = 0;
  const pointsByEvent = new Map<string, number>();
  for (const entry of ledger) {
    if (entry.balance !== 'spendable' || entry.currency !== currency) continue;
    ledgerSpendableSum += entry.points;
    pointsByEvent.set(entry.eventId, (pointsByEvent.get(entry.eventId) ?? 0) + entry.points);
  }
  return { spendable, ledgerSpendableSum, pointsByEvent };
}
