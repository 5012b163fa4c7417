import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_GENERATOR_OPTIONS, EventGenerator } from '../../../bench/generator/events.js';
import { programModelOf } from '../../../bench/generator/program-model.js';
import { encodeEvent } from '../../../bench/generator/spool.js';
import { Actor, unpackOutbox } from '../../../src/actors/actor.js';
import { loadProgramFile } from '../../../src/config/program-file.js';
import { unlimitedBudgets } from '../../../src/domain/ports.js';
import type { LedgerEntry, MemberState } from '../../../src/domain/state.js';
import { Encoding, type BatchRecord } from '../../../src/routing/batch-buffer.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { LmdbStore } from '../../../src/store/lmdb.js';
import { MemoryStore } from '../../../src/store/memory.js';
import type { ActorStore, OutboxKey } from '../../../src/store/types.js';
import { subjectsFor } from '../../../src/transport/subjects.js';

/**
 * One contract, both stores: the actor tests run on MemoryStore, the engine on
 * LmdbStore, so whatever the actor relies on is checked here against both.
 * The LMDB store writes only what changed against `base` and indexes new
 * members by `created`; the memory store ignores both, so a wrong base or a
 * missing created flag shows here as LMDB reading back something else.
 */

const root = mkdtempSync(join(tmpdir(), 'loyalty-store-contract-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const PARTITIONS = 16;

interface Subject {
  readonly store: ActorStore;
  /** Every outbox entry's key, oldest first. */
  outboxKeys(): OutboxKey[];
  /** A member's ledger, in sequence order. */
  ledgerOf(memberId: string): LedgerEntry[];
  /** All members of a partition, as a fresh read would give them. */
  members(partition: number): MemberState[];
  close(): Promise<void>;
}

let directories = 0;
const stores: readonly [string, () => Subject][] = [
  [
    'MemoryStore',
    () => {
      const store = new MemoryStore();
      return {
        store,
        outboxKeys: () => [...store.outbox.keys()].map((key) => key.split('/').map(Number) as OutboxKey),
        ledgerOf: (memberId) => [...(store.ledger.get(memberId) ?? [])],
        members: (partition) => store.scanMembers(partition, undefined, 1_000_000),
        close: () => store.close(),
      };
    },
  ],
  [
    'LmdbStore',
    () => {
      const dataDir = join(root, `lmdb-${directories++}`);
      const store = new LmdbStore({ dataDir, mapSizeBytes: 256 * 1024 * 1024, partitions: PARTITIONS });
      return {
        store,
        outboxKeys: () => [...store.outboxEntries()].map(({ key }) => key),
        ledgerOf: (memberId) => [...store.ledgerOf(partitionOf(memberId, PARTITIONS), memberId)],
        // A second handle on the same directory: what a restart would read, not this handle's memory.
        members: (partition) => {
          const fresh = new LmdbStore({ dataDir, mapSizeBytes: 256 * 1024 * 1024, partitions: PARTITIONS });
          try {
            return [...fresh.membersOf(partition)];
          } finally {
            void fresh.close();
          }
        },
        close: () => store.close(),
      };
    },
  ],
];

const program = loadProgramFile(join(import.meta.dirname, '../../../config/programs/retail.yaml'));

/** Generated retail traffic (purchases, returns, redemptions, activities) of few, busy members, in batches. */
function batches(count: number, size: number): BatchRecord[][] {
  const generator = new EventGenerator({ ...DEFAULT_GENERATOR_OPTIONS, runId: 'contract', members: 40, count, program: programModelOf(program) });
  const all: BatchRecord[] = [];
  for (let index = 0; index < count; index++) {
    const { event } = generator.next();
    all.push({ streamSequence: index + 1, publishedAtMs: 0, encoding: Encoding.Msgpack, memberId: event.memberId, payload: encodeEvent(event, 'msgpack') });
  }
  // Re-sent events in later batches: duplicates must answer with their first outcomes on both stores.
  for (let index = 0; index < count; index += 97) all.push({ ...all[index]!, streamSequence: all.length + 1 });
  const result: BatchRecord[][] = [];
  for (let offset = 0; offset < all.length; offset += size) result.push(all.slice(offset, offset + size));
  return result;
}

const actorOptions = { actorIndex: 0, actors: 1, ports: { budgets: unlimitedBudgets }, partitions: PARTITIONS, memberCacheMax: 1_000, payloadBytesMax: 65_536, subjects: subjectsFor('loyalty'), bootId: 9 };

describe.each(stores)('store contract: %s', (_name, open) => {
  it('gives back, after batches of busy members with duplicates, exactly the members the actor holds in memory, ledgers that add up, and first outcomes again', async () => {
    const subject = open();
    const actor = new Actor(subject.store, program, actorOptions);
    try {
      const inMemory = new Map<string, MemberState>();
      const outcomesByEvent = new Map<string, string>();
      let duplicates = 0;
      for (const records of batches(2_000, 128)) {
        const { result, outcomes } = await actor.process(records);
        duplicates += result.counts['purchase|duplicate'] ?? 0;
        for (const [, messageId, payload] of outcomes) {
          const eventKey = messageId;
          const first = outcomesByEvent.get(eventKey);
          if (first === undefined) outcomesByEvent.set(eventKey, payload);
          else expect(payload).toBe(first); // a duplicate repeats its first outcome exactly
        }
        for (const record of records) {
          const state = (actor as unknown as { cache: { get(id: string): MemberState | undefined } }).cache.get(record.memberId);
          if (state !== undefined) inMemory.set(record.memberId, state);
        }
      }
      expect(duplicates).toBeGreaterThan(0);
      // Every member, read back from the store, is the state the actor last decided.
      let compared = 0;
      for (let partition = 0; partition < PARTITIONS; partition++) {
        for (const stored of subject.members(partition)) {
          expect(stored).toEqual(inMemory.get(stored.memberId));
          compared += 1;
          // The ledger adds up to the balances (the ledger invariant), on either store.
          const ledger = subject.ledgerOf(stored.memberId);
          const sums: Record<string, number> = {};
          for (const entry of ledger) sums[`${entry.currency}/${entry.balance}`] = (sums[`${entry.currency}/${entry.balance}`] ?? 0) + entry.points;
          for (const [currencyId, currency] of Object.entries(stored.currencies)) {
            expect(sums[`${currencyId}/pending`] ?? 0).toBe(currency.pending);
            expect(sums[`${currencyId}/qualifying`] ?? 0).toBe(currency.qualifying);
          }
          expect(ledger.map((entry) => entry.seq)).toEqual(ledger.map((_entry, index) => index + 1));
        }
      }
      expect(compared).toBe(inMemory.size);
      expect(compared).toBeGreaterThan(20);
    } finally {
      await subject.close();
    }
  }, 60_000);

  it('keeps the due index by each write, lists due members in (due time, id) order after a cursor', async () => {
    const subject = open();
    try {
      const { store } = subject;
      const member = (memberId: string) => ({ memberId, currencies: {}, orders: [], redemptions: [], vouchers: [] }) as unknown as MemberState;
      const a = member('a');
      const b = member('b');
      const c = member('c');
      await store.commit({ members: [{ partition: 3, state: a, created: true, dueMs: 300 }, { partition: 3, state: b, created: true, dueMs: 100 }, { partition: 3, state: c, created: true, dueMs: 100 }], ledger: [], processed: [] });
      await store.durable();
      expect(store.dueMembers(3, 1_000, undefined, 10)).toEqual([{ dueMs: 100, memberId: 'b' }, { dueMs: 100, memberId: 'c' }, { dueMs: 300, memberId: 'a' }]);
      expect(store.dueMembers(3, 200, { dueMs: 100, memberId: 'b' }, 10)).toEqual([{ dueMs: 100, memberId: 'c' }]);
      expect(store.dueMembers(4, 1_000, undefined, 10)).toEqual([]);
      expect(store.indexedDueMs(a)).toBe(300);
      // b's next due time moves, c has none any more: the index follows (base: what the store holds).
      const b2 = { ...b, eventCount: 1 } as MemberState;
      const c2 = { ...c, eventCount: 1 } as MemberState;
      await store.commit({ members: [{ partition: 3, state: b2, base: b, dueMs: 500 }, { partition: 3, state: c2, base: c, dueMs: null }], ledger: [], processed: [] });
      await store.durable();
      expect(store.dueMembers(3, 1_000, undefined, 10)).toEqual([{ dueMs: 300, memberId: 'a' }, { dueMs: 500, memberId: 'b' }]);
      expect(store.scanMembers(3, 'a', 10).map((state) => state.memberId)).toEqual(['b', 'c']);
      expect(store.readMember(3, 'b')).toEqual(b2);
    } finally {
      await subject.close();
    }
  });

  it('writes an outbox entry with the outcomes and removes the entries a later commit names', async () => {
    const subject = open();
    const actor = new Actor(subject.store, program, actorOptions);
    try {
      const [first] = batches(6, 3);
      const processed = await actor.process(first!);
      expect(subject.outboxKeys()).toEqual([processed.outboxKey]);
      expect(processed.outboxKey).toEqual([9, 0, 1]);
      actor.outboxPublished(processed.outboxKey!);
      await actor.removePublishedOutbox();
      expect(subject.outboxKeys()).toEqual([]);
      // What the outbox held is what the batch returned to publish.
      const second = await actor.process(batches(6, 3)[1]!);
      const entry = subject.store instanceof LmdbStore ? [...subject.store.outboxEntries()][0]!.messages : (subject.store as MemoryStore).outbox.get('9/0/3')!;
      expect(unpackOutbox(entry)).toEqual(second.outcomes);
    } finally {
      await subject.close();
    }
  });
});
