import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import type { LedgerEntry } from '../../../src/domain/state.js';
import { decodeLedger, encodeLedger } from '../../../src/store/ledger-codec.js';

// 'future_kind': a kind the codec's table does not know yet is stored as its text.
const kinds = ['earn', 'release', 'clawback', 'redeem', 'expire', 'adjustment', 'donate', 'future_kind'] as const;

/** One event's entries: same member, mostly one event id and time, optional fields present or absent (null included). */
const eventEntries = fc
  .record({
    memberId: fc.string({ minLength: 1, maxLength: 8 }),
    eventId: fc.string({ minLength: 1, maxLength: 8 }),
    occurredAtMs: fc.integer({ min: 0, max: 2 ** 45 }),
    firstSeq: fc.integer({ min: 1, max: 1_000_000 }),
    rows: fc.array(
      fc.record(
        {
          kind: fc.constantFrom(...kinds),
          balance: fc.constantFrom('spendable', 'pending', 'qualifying', 'debt'),
          currency: fc.constantFrom('points', 'miles'),
          points: fc.integer({ min: -1e9, max: 1e9 }),
          ruleId: fc.string({ maxLength: 12 }),
          promotionId: fc.string({ maxLength: 6 }),
          lotExpiresAtMs: fc.option(fc.integer({ min: 0, max: 2 ** 45 }), { nil: null }),
          releaseAtMs: fc.integer({ min: 0, max: 2 ** 45 }),
          reference: fc.string({ maxLength: 6 }),
          reason: fc.string({ maxLength: 20 }),
          operator: fc.string({ maxLength: 6 }),
          ownEventId: fc.string({ minLength: 1, maxLength: 8 }),
          ownTime: fc.integer({ min: 0, max: 2 ** 45 }),
        },
        { requiredKeys: ['kind', 'balance', 'currency', 'points', 'ruleId'] },
      ),
      { minLength: 1, maxLength: 10 },
    ),
  })
  .map(({ memberId, eventId, occurredAtMs, firstSeq, rows }) =>
    rows.map(({ ownEventId, ownTime, ...row }, index) => ({
      seq: firstSeq + index,
      memberId,
      eventId: ownEventId ?? eventId,
      ...row,
      occurredAtMs: ownTime ?? occurredAtMs,
    })) as unknown as LedgerEntry[],
  );

describe('ledger codec', () => {
  it('gives back exactly the entries it was given, through msgpack, optional fields present, absent or null', () => {
    fc.assert(
      fc.property(eventEntries, (entries) => {
        const decoded = decodeLedger(unpack(pack(encodeLedger(entries))));
        expect(decoded).toStrictEqual(entries.map((entry) => ({ ...entry })));
        for (let index = 0; index < entries.length; index++) expect(Object.keys(decoded[index]!).sort()).toEqual(Object.keys(entries[index]!).sort());
      }),
      { numRuns: 300 },
    );
  });

  it('says the member, event id and time once per record', () => {
    const entries = [1, 2, 3].map((seq) => ({ seq, memberId: 'member-1', eventId: 'event-1', kind: 'earn', balance: 'pending', currency: 'points', points: 10, ruleId: 'earn:base', occurredAtMs: 1_700_000_000_000 })) as unknown as LedgerEntry[];
    const stored = encodeLedger(entries);
    // One flat list of rows; kind and balance as their codes: earn is 0, pending 1.
    expect(stored.values).toEqual([1, 2, 3].flatMap((seq) => [seq, 0, 1, 'points', 10, 'earn:base', 0]));
    expect(pack(stored).length).toBeLessThan(pack(entries).length / 2);
  });

  it('reads records of one array per row with the kind and balance as text (written before), and refuses an unknown code', () => {
    const textRows = { memberId: 'm', eventId: 'e', occurredAtMs: 5, rows: [[7, 'clawback', 'qualifying', 'points', -3, 'return', 0]] };
    expect(decodeLedger(unpack(pack(textRows)))).toEqual([
      { seq: 7, memberId: 'm', eventId: 'e', kind: 'clawback', balance: 'qualifying', currency: 'points', points: -3, ruleId: 'return', occurredAtMs: 5 },
    ]);
    const badCode = { ...textRows, rows: [[7, 250, 0, 'points', -3, 'return', 0]] };
    expect(() => decodeLedger(unpack(pack(badCode)))).toThrow(/unknown kind or balance code/);
  });
});
