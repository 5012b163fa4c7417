import { assert } from '../domain/assert.js';
import { LEDGER_KINDS, type LedgerBalance, type LedgerEntry, type LedgerKind } from '../domain/state.js';

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
 * Kinds and balances are stored as their index in these tables (kinds: the
 * domain's LEDGER_KINDS) (a small
 * integer packs in one byte, a string costs a header and UTF-8 encoding per
 * row: the bench measured the ledger at a fifth of the store's encoding
 * time). Append only: a stored index must keep its meaning. A kind missing
 * here (a new one not added yet) is stored as its text, as rows written
 * before the tables were.
 */
const KINDS: readonly LedgerKind[] = LEDGER_KINDS;
const BALANCES: readonly LedgerBalance[] = ['spendable', 'pending', 'qualifying', 'debt'];
const KIND_CODE = new Map<string, number>(KINDS.map((kind, index) => [kind, index]));
const BALANCE_CODE = new Map<string, number>(BALANCES.map((balance, index) => [balance, index]));

const OPTIONAL = ['promotionId', 'lotExpiresAtMs', 'releaseAtMs', 'reference', 'reason', 'operator'] as const;
type Optional = (typeof OPTIONAL)[number];

type Row = [seq: number, kind: number | string, balance: number | string, currency: string, points: number, ruleId: string, present: number, ...optional: unknown[]];

/**
 * `values`: the rows one after the other in one flat list (one array per
 * record, not one per entry: per-entry arrays were the engine's largest
 * allocation per event, 2.6 KB). Records written before hold `rows`, one
 * array per entry; both are read.
 */
export interface StoredLedger {
  readonly memberId: string;
  readonly eventId: string;
  readonly occurredAtMs: number;
  readonly values?: readonly unknown[];
  readonly rows?: readonly Row[];
}

/** Values of a row before its optional ones. */
const FIXED = 7;

const OWN_EVENT_ID = 1 << OPTIONAL.length;
const OWN_TIME = 1 << (OPTIONAL.length + 1);

export function encodeLedger(entries: readonly LedgerEntry[]): StoredLedger {
  const first = entries[0];
  assert(first !== undefined, 'a ledger record holds at least one entry');
  const values: unknown[] = [];
  for (const entry of entries) {
    assert(entry.memberId === first.memberId, 'a ledger record holds one member');
    values.push(entry.seq, KIND_CODE.get(entry.kind) ?? entry.kind, BALANCE_CODE.get(entry.balance) ?? entry.balance, entry.currency, entry.points, entry.ruleId, 0);
    const presentAt = values.length - 1;
    let present = 0;
    for (let bit = 0; bit < OPTIONAL.length; bit++) {
      const value = entry[OPTIONAL[bit] as Optional];
      if (value === undefined && !(OPTIONAL[bit]! in entry)) continue;
      present |= 1 << bit;
      values.push(value);
    }
    if (entry.eventId !== first.eventId) {
      present |= OWN_EVENT_ID;
      values.push(entry.eventId);
    }
    if (entry.occurredAtMs !== first.occurredAtMs) {
      present |= OWN_TIME;
      values.push(entry.occurredAtMs);
    }
    values[presentAt] = present;
  }
  return { memberId: first.memberId, eventId: first.eventId, occurredAtMs: first.occurredAtMs, values };
}

export function decodeLedger(stored: StoredLedger): LedgerEntry[] {
  const entries: LedgerEntry[] = [];
  if (stored.values !== undefined) {
    const values = stored.values;
    let at = 0;
    while (at < values.length) at = decodeRow(stored, values, at, entries);
    assert(at === values.length, 'a stored ledger record ends inside a row');
    return entries;
  }
  assert(stored.rows !== undefined, 'a stored ledger record holds values or rows');
  for (const row of stored.rows) {
    const end = decodeRow(stored, row, 0, entries);
    assert(end === row.length, 'a stored ledger row has values left over');
  }
  return entries;
}

/** Decodes the row starting at `at` into `entries`; returns where the next row starts. */
function decodeRow(stored: StoredLedger, row: readonly unknown[], at: number, entries: LedgerEntry[]): number {
  const kindValue = row[at + 1];
  const balanceValue = row[at + 2];
  const kind = typeof kindValue === 'number' ? KINDS[kindValue] : kindValue;
  const balance = typeof balanceValue === 'number' ? BALANCES[balanceValue] : balanceValue;
  assert((typeof kindValue !== 'number' || kind !== undefined) && (typeof balanceValue !== 'number' || balance !== undefined), `stored ledger row ${String(row[at])} has an unknown kind or balance code`);
  const entry: Record<string, unknown> = {
    seq: row[at],
    memberId: stored.memberId,
    eventId: stored.eventId,
    kind,
    balance,
    currency: row[at + 3],
    points: row[at + 4],
    ruleId: row[at + 5],
  };
  const present = row[at + 6] as number;
  let next = at + FIXED;
  for (let bit = 0; bit < OPTIONAL.length; bit++) {
    if ((present & (1 << bit)) !== 0) entry[OPTIONAL[bit]!] = row[next++];
  }
  if ((present & OWN_EVENT_ID) !== 0) entry.eventId = row[next++];
  entry.occurredAtMs = (present & OWN_TIME) !== 0 ? row[next++] : stored.occurredAtMs;
  entries.push(entry as unknown as LedgerEntry);
  return next;
}
