import { assert } from '../domain/assert.js';
import type { LedgerEntry } from '../domain/state.js';

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

const OPTIONAL = ['promotionId', 'lotExpiresAtMs', 'releaseAtMs', 'reference', 'reason', 'operator'] as const;
type Optional = (typeof OPTIONAL)[number];

type Row = [seq: number, kind: string, balance: string, currency: string, points: number, ruleId: string, present: number, ...optional: unknown[]];

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
    const row: Row = [entry.seq, entry.kind, entry.balance, entry.currency, entry.points, entry.ruleId, 0];
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
    const entry: Record<string, unknown> = {
      seq: row[0],
      memberId: stored.memberId,
      eventId: stored.eventId,
      kind: row[1],
      balance: row[2],
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
