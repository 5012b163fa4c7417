import { assert } from '../domain/assert.js';
import type { LedgerBalance, LedgerEntry, LedgerKind } from '../domain/state.js';

/**
 * The stored form of one event's ledger entries: rows of values instead of
 * objects with keys, and the member id, event id and time said once.
 *
 * Why: every applied event writes its entries (about eight for a purchase
 * under the retail program); as objects they were a kilobyte per event and the
 * largest share of the store's encoding time. Rows are a third of the bytes
 * and encode without a key per value.
 *
 * A row is [seq, kind, balance, currency, points, ruleId, present, ...optional]
 * where `present` is a bit mask of the optional fields that follow, in
 * OPTIONAL order, so a decoded entry has exactly the fields the domain gave it.
 * An entry whose event id or time differs from the record's first entry's
 * carries its own (bits 6 and 7).
 */

/**
 * Kinds and balances are stored as their index in these tables (a small
 * integer packs in one byte, a string costs a header and UTF-8 encoding per
 * row: the bench measured the ledger at a fifth of the store's encoding
 * time). Append only: a stored index must keep its meaning. A kind missing
 * here (a new one not added yet) is stored as its text, as rows written
 * before the tables were.
 */
const KINDS: readonly LedgerKind[] = [
  'earn',
  'activity',
  'adjustment',
  'release',
  'clawback',
  'redeem',
  'redeem_cancel',
  'expire',
  'forfeit',
  'qualifying_lapse',
  'debt',
  'debt_repayment',
  'donate',
];
const BALANCES: readonly LedgerBalance[] = ['spendable', 'pending', 'qualifying', 'debt'];
const KIND_CODE = new Map<string, number>(KINDS.map((kind, index) => [kind, index]));
const BALANCE_CODE = new Map<string, number>(BALANCES.map((balance, index) => [balance, index]));

const OPTIONAL = ['promotionId', 'lotExpiresAtMs', 'releaseAtMs', 'reference', 'reason', 'operator'] as const;
type Optional = (typeof OPTIONAL)[number];

type Row = [seq: number, kind: number | string, balance: number | string, currency: string, points: number, ruleId: string, present: number, ...optional: unknown[]];

export interface StoredLedger {
  readonly memberId: string;
  readonly eventId: string;
  readonly occurredAtMs: number;
  readonly rows: readonly Row[];
}

const OWN_EVENT_ID = 1 << OPTIONAL.length;
const OWN_TIME = 1 << (OPTIONAL.length + 1);

export function encodeLedger(entries: readonly LedgerEntry[]): StoredLedger {
  const first = entries[0];
  assert(first !== undefined, 'a ledger record holds at least one entry');
  const rows: Row[] = [];
  for (const entry of entries) {
    assert(entry.memberId === first.memberId, 'a ledger record holds one member');
    const row: Row = [entry.seq, KIND_CODE.get(entry.kind) ?? entry.kind, BALANCE_CODE.get(entry.balance) ?? entry.balance, entry.currency, entry.points, entry.ruleId, 0];
    let present = 0;
    for (let bit = 0; bit < OPTIONAL.length; bit++) {
      const value = entry[OPTIONAL[bit] as Optional];
      if (value === undefined && !(OPTIONAL[bit]! in entry)) continue;
      present |= 1 << bit;
      row.push(value);
    }
    if (entry.eventId !== first.eventId) {
      present |= OWN_EVENT_ID;
      row.push(entry.eventId);
    }
    if (entry.occurredAtMs !== first.occurredAtMs) {
      present |= OWN_TIME;
      row.push(entry.occurredAtMs);
    }
    row[6] = present;
    rows.push(row);
  }
  return { memberId: first.memberId, eventId: first.eventId, occurredAtMs: first.occurredAtMs, rows };
}

export function decodeLedger(stored: StoredLedger): LedgerEntry[] {
  const entries: LedgerEntry[] = [];
  for (const row of stored.rows) {
    const kind = typeof row[1] === 'number' ? KINDS[row[1]] : row[1];
    const balance = typeof row[2] === 'number' ? BALANCES[row[2]] : row[2];
    assert((typeof row[1] !== 'number' || kind !== undefined) && (typeof row[2] !== 'number' || balance !== undefined), `stored ledger row ${row[0]} has an unknown kind or balance code`);
    const entry: Record<string, unknown> = {
      seq: row[0],
      memberId: stored.memberId,
      eventId: stored.eventId,
      kind,
      balance,
      currency: row[3],
      points: row[4],
      ruleId: row[5],
    };
    const present = row[6];
    let next = 7;
    for (let bit = 0; bit < OPTIONAL.length; bit++) {
      if ((present & (1 << bit)) !== 0) entry[OPTIONAL[bit]!] = row[next++];
    }
    if ((present & OWN_EVENT_ID) !== 0) entry.eventId = row[next++];
    entry.occurredAtMs = (present & OWN_TIME) !== 0 ? row[next++] : stored.occurredAtMs;
    entries.push(entry as unknown as LedgerEntry);
  }
  return entries;
}
