import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { EngineError } from '../../../src/config/errors.js';
import { AssertionError } from '../../../src/domain/assert.js';
import type { LedgerEntry, MemberState } from '../../../src/domain/state.js';
import { emptyDay, type DayCounters } from '../../../src/reports/kpis.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { LmdbStore, STORE_FORMAT_VERSION } from '../../../src/store/lmdb.js';
import type { OutboxKey } from '../../../src/store/types.js';
import type { LedgerQuery } from '../../../src/api/context.js';

// The store never looks inside a state beyond its memberId, its currencies'
// lots and the keys of its orders, redemptions and vouchers (nor inside a
// ledger entry beyond memberId and seq): minimal stand-ins keep these tests
// independent of the domain's other shapes.
const member = (memberId: string, version = 1) =>
  ({ memberId, version, nested: { list: [1, 2, 3] }, currencies: {}, orders: [], redemptions: [], vouchers: [] }) as unknown as MemberState;
const entry = (memberId: string, seq: number, eventId = `e${seq}`) => ({ seq, memberId, eventId, kind: 'earn', points: seq * 10 }) as unknown as LedgerEntry;
const bytes = (...values: number[]) => Uint8Array.from(values);

const root = mkdtempSync(join(tmpdir(), 'loyalty-lmdb-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
const open: LmdbStore[] = [];
function openStore(dataDir = join(root, `store-${++counter}`), partitions?: number): LmdbStore {
  const store = new LmdbStore({ dataDir, mapSizeBytes: 64 * 1024 * 1024, partitions: partitions ?? 64 });
  open.push(store);
  return store;
}

afterEach(async () => {
  for (const store of open.splice(0)) await store.close().catch(() => undefined);
});

function engineError(action: () => unknown): EngineError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(EngineError);
    return error as EngineError;
  }
  throw new Error('expected an EngineError');
}

describe('LmdbStore', () => {
  it('commits a batch and reads back member, ledger, processed and outbox', async () => {
    const store = openStore();
    await store.commit({
      members: [
        { partition: 3, created: true, state: member('m1'), dueMs: null },
        { partition: 5, created: true, state: member('m2'), dueMs: null },
      ],
      // One applied event's entries travel together.
      ledger: [{ partition: 3, entries: [entry('m1', 1, 'e1'), entry('m1', 2, 'e1')] }],
      processed: [{ partition: 0, memberId: 'm1', eventId: 'e1', outcomes: bytes(1, 2, 3) }],
      outbox: { key: [9, 0, 1], messages: bytes(4, 5) },
    });
    expect(store.readMember(3, 'm1')).toEqual(member('m1'));
    expect(store.readMember(5, 'm2')).toEqual(member('m2'));
    expect(store.readMember(5, 'm1')).toBeUndefined();
    expect([...store.ledgerOf(3, 'm1')]).toEqual([entry('m1', 1, 'e1'), entry('m1', 2, 'e1')]);
    expect([...store.readProcessed(0, 'm1', 'e1')!]).toEqual([1, 2, 3]);
    expect(store.readProcessed(0, 'm1', 'e2')).toBeUndefined();
    expect(store.readProcessed(0, 'm2', 'e1')).toBeUndefined();
    expect(store.readProcessed(1, 'm1', 'e1')).toBeUndefined();
    expect([...store.outboxEntries()].map(({ key, messages }) => [key, [...messages]])).toEqual([[[9, 0, 1], [4, 5]]]);
    await store.durable();
  });

  it('a later commit replaces a member\'s state; commits apply in call order', async () => {
    const store = openStore();
    const first = store.commit({ members: [{ partition: 0, created: true, state: member('m1', 1), dueMs: null }], ledger: [], processed: [] });
    const second = store.commit({ members: [{ partition: 0, created: true, state: member('m1', 2), dueMs: null }], ledger: [], processed: [] });
    await Promise.all([first, second]);
    expect(store.readMember(0, 'm1')).toEqual(member('m1', 2));
  });

  it('an empty batch commits nothing and does not fail', async () => {
    const store = openStore();
    await store.commit({ members: [], ledger: [], processed: [] });
    expect([...store.outboxEntries()]).toEqual([]);
  });

  describe('ensureMeta', () => {
    it('records the partition count on first use and returns it afterwards', async () => {
      const dataDir = join(root, 'meta');
      const store = openStore(dataDir);
      const created = await store.ensureMeta(64, 1_000);
      expect(created).toEqual({ formatVersion: STORE_FORMAT_VERSION, partitions: 64, createdAtMs: 1_000 });
      expect(await store.ensureMeta(64, 2_000)).toEqual(created);
      await store.close();
      const reopened = openStore(dataDir);
      expect(await reopened.ensureMeta(64, 3_000)).toEqual(created);
    });

    it('refuses another partition count (ERR_PARTITIONS_MISMATCH), also after a reopen', async () => {
      const dataDir = join(root, 'meta-mismatch');
      const store = openStore(dataDir);
      await store.ensureMeta(64, 1);
      const error = await store.ensureMeta(32, 2).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(EngineError);
      expect((error as EngineError).code).toBe('ERR_PARTITIONS_MISMATCH');
      expect((error as Error).message).toContain('64 partitions');
      await store.close();
      const reopened = openStore(dataDir);
      await expect(reopened.ensureMeta(128, 3)).rejects.toMatchObject({ code: 'ERR_PARTITIONS_MISMATCH' });
    });

    it('upgrades a format 4 directory (map cores) in place and reads its members; refuses formats it does not read', async () => {
      const dataDir = join(root, 'meta-format-4');
      const store = openStore(dataDir);
      const meta = store.root.openDB({ name: 'meta', encoding: 'msgpack' });
      await meta.put('meta', { formatVersion: 4, partitions: 64, createdAtMs: 1 });
      // A format 4 core: the state as a map, its lists' keys under their own names.
      const records = store.root.openDB({ name: 'members', encoding: 'msgpack', useRecords: false } as never);
      const old = { ...member('m1'), dueMs: null };
      await records.put([partitionOf('m1', 64), 'm1', 0], old);
      expect(await store.ensureMeta(64, 2)).toEqual({ formatVersion: STORE_FORMAT_VERSION, partitions: 64, createdAtMs: 1 });
      expect(STORE_FORMAT_VERSION).toBe(5);
      expect(store.member('m1')).toEqual(member('m1'));
      await store.close();
      const reopened = openStore(dataDir);
      expect((await reopened.ensureMeta(64, 3)).formatVersion).toBe(STORE_FORMAT_VERSION);
      for (const formatVersion of [3, STORE_FORMAT_VERSION + 1]) {
        await reopened.root.openDB({ name: 'meta', encoding: 'msgpack' }).put('meta', { formatVersion, partitions: 64, createdAtMs: 1 });
        await expect(reopened.ensureMeta(64, 4)).rejects.toMatchObject({ code: 'ERR_STORE_FORMAT', message: expect.stringContaining(`store format ${formatVersion}, this engine reads 4 and 5`) });
      }
    });
  });

  it('lists outbox entries oldest first: by boot, then actor, then batch (numerically)', async () => {
    const store = openStore();
    const keys: OutboxKey[] = [
      [2, 0, 1],
      [1, 1, 10],
      [1, 0, 10],
      [1, 0, 2],
      [1, 0, 9],
      [1_700_000_000_000, 0, 1],
      [1_699_999_999_999, 3, 7],
    ];
    for (const [index, key] of keys.entries()) {
      await store.commit({ members: [], ledger: [], processed: [], outbox: { key, messages: bytes(index) } });
    }
    expect([...store.outboxEntries()].map(({ key }) => key)).toEqual([
      [1, 0, 2],
      [1, 0, 9],
      [1, 0, 10],
      [1, 1, 10],
      [2, 0, 1],
      [1_699_999_999_999, 3, 7],
      [1_700_000_000_000, 0, 1],
    ]);
  });

  it('removes an outbox entry by key and leaves the others', async () => {
    const store = openStore();
    for (const batch of [1, 2, 3]) {
      await store.commit({ members: [], ledger: [], processed: [], outbox: { key: [1, 0, batch], messages: bytes(batch) } });
    }
    await store.removeOutbox([1, 0, 2]);
    await store.removeOutbox([1, 0, 99]); // absent: harmless
    expect([...store.outboxEntries()].map(({ key, messages }) => [key, [...messages]])).toEqual([
      [[1, 0, 1], [1]],
      [[1, 0, 3], [3]],
    ]);
  });

  it('ledgerOf returns only that member\'s entries in that partition, in sequence order', async () => {
    const store = openStore();
    const record = (partition: number, memberId: string, ...seqs: number[]) => ({ partition, entries: seqs.map((seq) => entry(memberId, seq)) });
    await store.commit({
      members: [],
      ledger: [
        // Out of order, and neighbours whose ids share a prefix.
        record(7, 'abc', 10, 11),
        record(7, 'abc', 2, 3, 4),
        record(7, 'abc', 1),
        record(7, 'ab', 1),
        record(7, 'abcd', 1, 2),
        record(7, 'abc-', 1),
        record(7, 'abd', 1),
        record(6, 'abc', 5),
        record(8, 'abc', 6),
      ],
      processed: [],
    });
    expect([...store.ledgerOf(7, 'abc')].map((read) => [read.memberId, read.seq])).toEqual([
      ['abc', 1],
      ['abc', 2],
      ['abc', 3],
      ['abc', 4],
      ['abc', 10],
      ['abc', 11],
    ]);
    // afterSeq is a cursor: entries after it, also from the middle of an event's record.
    expect([...store.ledgerOf(7, 'abc', 2)].map((read) => read.seq)).toEqual([3, 4, 10, 11]);
    expect([...store.ledgerOf(7, 'abc', 11)]).toEqual([]);
    expect([...store.ledgerOf(7, 'ab')].map((read) => [read.memberId, read.seq])).toEqual([['ab', 1]]);
    expect([...store.ledgerOf(6, 'abc')].map((read) => read.seq)).toEqual([5]);
    expect([...store.ledgerOf(7, 'nobody')]).toEqual([]);
  });

  it('refuses a ledger record without entries', async () => {
    const store = openStore();
    await expect(store.commit({ members: [], ledger: [{ partition: 0, entries: [] }], processed: [] })).rejects.toThrow(AssertionError);
  });

  it('membersOf lists one partition\'s members only', async () => {
    const store = openStore();
    await store.commit({
      members: [
        { partition: 1, created: true, state: member('b'), dueMs: null },
        { partition: 1, created: true, state: member('a'), dueMs: null },
        { partition: 2, created: true, state: member('c'), dueMs: null },
        { partition: 0, created: true, state: member('d'), dueMs: null },
      ],
      ledger: [],
      processed: [],
    });
    expect([...store.membersOf(1)].map((state) => state.memberId)).toEqual(['a', 'b']);
    expect([...store.membersOf(2)].map((state) => state.memberId)).toEqual(['c']);
    expect([...store.membersOf(3)]).toEqual([]);
  });

  it('scanMembers pages through one partition in member id order, after a cursor', async () => {
    const store = openStore();
    const ids = ['m-05', 'm-01', 'm-04', 'm-02', 'm-03'];
    await store.commit({
      members: [...ids.map((id) => ({ partition: 2, created: true, state: member(id), dueMs: null })), { partition: 3, created: true, state: member('m-00'), dueMs: null }, { partition: 1, created: true, state: member('m-99'), dueMs: null }],
      ledger: [],
      processed: [],
    });
    const seen: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 10; page++) {
      const states = store.scanMembers(2, after, 2);
      if (states.length === 0) break;
      expect(states.length).toBeLessThanOrEqual(2);
      seen.push(...states.map((state) => state.memberId));
      after = states[states.length - 1]!.memberId;
    }
    expect(seen).toEqual(['m-01', 'm-02', 'm-03', 'm-04', 'm-05']);
    // A cursor that is not (or no longer) a stored member still works.
    expect(store.scanMembers(2, 'm-025', 10).map((state) => state.memberId)).toEqual(['m-03', 'm-04', 'm-05']);
    expect(store.scanMembers(4, undefined, 10)).toEqual([]);
  });

  it('keeps the due index by each member write: lists due members in (due, id) order after a cursor, replaces and drops keys', async () => {
    const dataDir = join(root, `store-${++counter}`);
    let store = openStore(dataDir);
    const a = member('a', 1);
    const b = member('b', 1);
    const c = member('c', 1);
    await store.commit({
      members: [
        { partition: 2, created: true, state: a, dueMs: 300 },
        { partition: 2, created: true, state: b, dueMs: 100 },
        { partition: 2, created: true, state: c, dueMs: 100 },
        { partition: 3, created: true, state: member('z'), dueMs: 50 },
        { partition: 2, created: true, state: member('never'), dueMs: null },
      ],
      ledger: [],
      processed: [],
    });
    const ids = (keys: { memberId: string }[]) => keys.map((key) => key.memberId);
    expect(store.dueMembers(2, 1_000, undefined, 10)).toEqual([{ dueMs: 100, memberId: 'b' }, { dueMs: 100, memberId: 'c' }, { dueMs: 300, memberId: 'a' }]);
    expect(ids(store.dueMembers(2, 299, undefined, 10))).toEqual(['b', 'c']);
    expect(ids(store.dueMembers(2, 300, undefined, 10))).toEqual(['b', 'c', 'a']);
    expect(ids(store.dueMembers(2, 1_000, undefined, 2))).toEqual(['b', 'c']);
    expect(ids(store.dueMembers(2, 1_000, { dueMs: 100, memberId: 'b' }, 10))).toEqual(['c', 'a']);
    expect(ids(store.dueMembers(2, 1_000, { dueMs: 100, memberId: 'c' }, 10))).toEqual(['a']);
    expect(ids(store.dueMembers(3, 1_000, undefined, 10))).toEqual(['z']);
    expect(store.indexedDueMs(a)).toBe(300);
    // b moves later, c leaves the index; written from the states this store wrote.
    const b2 = member('b', 2);
    const c2 = member('c', 2);
    await store.commit({ members: [{ partition: 2, state: b2, base: b, dueMs: 500 }, { partition: 2, state: c2, base: c, dueMs: null }], ledger: [], processed: [] });
    expect(store.dueMembers(2, 1_000, undefined, 10)).toEqual([{ dueMs: 300, memberId: 'a' }, { dueMs: 500, memberId: 'b' }]);
    // Reopened, the store knows the keys from the cores it reads (and from the core itself for a base it never saw).
    await store.close();
    store = openStore(dataDir);
    const readA = store.readMember(2, 'a')!;
    expect(store.indexedDueMs(readA)).toBe(300);
    expect(store.indexedDueMs(store.readMember(2, 'c')!)).toBeNull();
    await store.commit({
      members: [
        { partition: 2, state: member('a', 3), base: readA, dueMs: 700 },
        { partition: 2, state: member('b', 3), base: member('b', 2), dueMs: 600 },
      ],
      ledger: [],
      processed: [],
    });
    expect(store.dueMembers(2, 1_000, undefined, 10)).toEqual([{ dueMs: 600, memberId: 'b' }, { dueMs: 700, memberId: 'a' }]);
    // The member read back is the state as written: the core's due time is the store's, not the member's.
    expect(store.readMember(2, 'a')).toEqual(member('a', 3));
  });

  it('remembers per partition the program digest its due index was built under', async () => {
    const dataDir = join(root, `store-${++counter}`);
    let store = openStore(dataDir);
    expect(store.dueIndexDigest(4)).toBeUndefined();
    await store.commit({ members: [], ledger: [], processed: [], dueIndexMarks: [{ partition: 4, programDigest: 123 }, { partition: 5, programDigest: 456 }] });
    await store.commit({ members: [], ledger: [], processed: [], dueIndexMarks: [{ partition: 4, programDigest: 789 }] });
    await store.close();
    store = openStore(dataDir);
    expect([store.dueIndexDigest(4), store.dueIndexDigest(5), store.dueIndexDigest(6)]).toEqual([789, 456, undefined]);
  });

  it('adds committed global budget usage per actor and sums it over actors', async () => {
    const store = openStore();
    const usage = (actor: number, ...rows: [string, number, number][]) => store.commit({ members: [], ledger: [], processed: [], budgets: { actor, usage: rows } });
    await usage(0, ['promo-a', 100, 1], ['promo-b', 5, 1]);
    await usage(0, ['promo-a', 50, 2]);
    await usage(1, ['promo-a', 7, 1]);
    expect(store.budgetTotals()).toEqual(
      new Map([
        ['promo-a', { points: 157, uses: 4 }],
        ['promo-b', { points: 5, uses: 1 }],
      ]),
    );
  });

  it('keeps everything across a close and reopen of the data directory', async () => {
    const dataDir = join(root, 'reopen');
    const store = openStore(dataDir);
    await store.ensureMeta(16, 5);
    await store.commit({
      members: [{ partition: 4, created: true, state: member('m1', 7), dueMs: null }],
      ledger: [{ partition: 4, entries: [entry('m1', 1)] }],
      processed: [{ partition: 4, memberId: 'm1', eventId: 'e1', outcomes: bytes(42) }],
      outbox: { key: [1, 0, 1], messages: bytes(43) },
    });
    await store.durable();
    await store.close();
    const reopened = openStore(dataDir);
    expect(reopened.readMember(4, 'm1')).toEqual(member('m1', 7));
    expect([...reopened.ledgerOf(4, 'm1')]).toEqual([entry('m1', 1)]);
    expect([...reopened.readProcessed(4, 'm1', 'e1')!]).toEqual([42]);
    expect([...reopened.outboxEntries()].map(({ key }) => key)).toEqual([[1, 0, 1]]);
    expect((await reopened.ensureMeta(16, 6)).createdAtMs).toBe(5);
  });

  it('cannot open a data directory that is a file (ERR_STORE_OPEN)', () => {
    const file = join(root, 'not-a-directory');
    writeFileSync(file, 'x');
    expect(engineError(() => openStore(file)).code).toBe('ERR_STORE_OPEN');
  });

  describe('reads by member id (for the API)', () => {
    const PARTITIONS = 16;
    const at = (day: number) => Date.UTC(2026, 0, day);
    const full = (seq: number, eventId: string, kind: string, day: number) =>
      ({ seq, memberId: 'alice', eventId, kind, points: seq, occurredAtMs: at(day) }) as unknown as LedgerEntry;
    // Four applied events of alice: their entries stored one record per event.
    const events = [
      [full(1, 'e1', 'earn', 1), full(2, 'e1', 'earn', 1)],
      [full(3, 'e2', 'redeem', 2)],
      [full(4, 'e3', 'earn', 3), full(5, 'e3', 'earn', 3), full(6, 'e3', 'expire', 3)],
      [full(7, 'e4', 'redeem', 4)],
    ];
    const all = events.flat();

    async function aliceStore(): Promise<LmdbStore> {
      const store = openStore(undefined, PARTITIONS);
      const partition = partitionOf('alice', PARTITIONS);
      await store.commit({
        members: [{ partition, created: true, state: member('alice'), dueMs: null }],
        ledger: [...events.map((entries) => ({ partition, entries })), { partition, entries: [entry('alicia', 1)] }],
        processed: [],
      });
      return store;
    }

    function pages(store: LmdbStore, query: Omit<LedgerQuery, 'afterSeq'>): LedgerEntry[][] {
      const result: LedgerEntry[][] = [];
      let afterSeq: number | undefined = 0;
      while (afterSeq !== undefined) {
        const page = store.ledger('alice', { ...query, afterSeq });
        result.push([...page.entries]);
        expect(result.length).toBeLessThan(20);
        afterSeq = page.nextAfterSeq;
      }
      return result;
    }

    it('member() finds a member by id through its partition', async () => {
      const store = await aliceStore();
      expect(store.member('alice')).toEqual(member('alice'));
      expect(store.member('bob')).toBeUndefined();
    });

    it('needs the partition count, from the options or from ensureMeta', async () => {
      const dataDir = join(root, 'reads-partitions');
      const store = new LmdbStore({ dataDir, mapSizeBytes: 64 * 1024 * 1024 });
      open.push(store);
      expect(() => store.member('alice')).toThrow(AssertionError);
      await store.ensureMeta(PARTITIONS, 1);
      expect(store.member('alice')).toBeUndefined();
    });

    it('ledger() pages through every entry in order, with a cursor that can stop inside an event', async () => {
      const store = await aliceStore();
      expect(pages(store, { limit: 2 }).map((page) => page.map((read) => read.seq))).toEqual([[1, 2], [3, 4], [5, 6], [7]]);
      const first = store.ledger('alice', { afterSeq: 0, limit: 2 });
      expect(first.nextAfterSeq).toBe(2);
      expect(store.ledger('alice', { afterSeq: 4, limit: 10 }).entries.map((read) => read.seq)).toEqual([5, 6, 7]);
      expect(store.ledger('alice', { afterSeq: 4, limit: 10 }).nextAfterSeq).toBeUndefined();
      expect(store.ledger('alice', { afterSeq: 7, limit: 10 })).toEqual({ entries: [], nextAfterSeq: undefined });
      expect(store.ledger('nobody', { afterSeq: 0, limit: 10 })).toEqual({ entries: [], nextAfterSeq: undefined });
    });

    it('ledger() pages of any size add up to the whole ledger, filtered or not', async () => {
      const store = await aliceStore();
      for (let limit = 1; limit <= 8; limit++) {
        expect(pages(store, { limit }).flat()).toEqual(all);
        expect(pages(store, { limit, kinds: ['earn'] }).flat()).toEqual(all.filter((read) => read.kind === 'earn'));
        expect(pages(store, { limit, fromMs: at(2), toMs: at(4) }).flat()).toEqual(all.filter((read) => read.seq >= 3 && read.seq <= 6));
        for (const page of pages(store, { limit })) expect(page.length).toBeLessThanOrEqual(limit);
      }
    });

    it('ledger() filters by kind and by an event-time range (inclusive start, exclusive end)', async () => {
      const store = await aliceStore();
      expect(store.ledger('alice', { afterSeq: 0, limit: 100, kinds: ['redeem'] }).entries.map((read) => read.seq)).toEqual([3, 7]);
      expect(store.ledger('alice', { afterSeq: 0, limit: 100, fromMs: at(3) }).entries.map((read) => read.seq)).toEqual([4, 5, 6, 7]);
      expect(store.ledger('alice', { afterSeq: 0, limit: 100, toMs: at(3) }).entries.map((read) => read.seq)).toEqual([1, 2, 3]);
    });

    it('ledger() refuses a page limit that is not positive', async () => {
      const store = await aliceStore();
      expect(() => store.ledger('alice', { afterSeq: 0, limit: 0 })).toThrow(AssertionError);
    });
  });

  it('adds KPI counters per actor across commits and merges actors in reportSource()', async () => {
    const store = openStore();
    const day = (issued: number, active: number): DayCounters => {
      const counters = emptyDay();
      counters.currencies.points = { issued, redeemed: 0, expired: 0, adjusted: 0, clawedBack: 0, liabilityDelta: issued, redemptions: 0 };
      counters.activeMembers = active;
      counters.tierDelta = { member: active };
      return counters;
    };
    const kpiCommit = (actor: number, dayKey: number, issued: number, active: number) =>
      store.commit({ members: [], ledger: [], processed: [], kpis: { actor, days: [[dayKey, day(issued, active)]], weeks: [[100, active]], months: [[300, active]] } });
    await kpiCommit(0, 20_000, 10, 1);
    await kpiCommit(0, 20_000, 5, 2);
    await kpiCommit(1, 20_000, 100, 3);
    await kpiCommit(1, 20_001, 7, 1);
    const source = store.reportSource();
    expect([...source.days.keys()].sort()).toEqual([20_000, 20_001]);
    const first = source.days.get(20_000)!;
    expect(first.currencies.points).toMatchObject({ issued: 115, liabilityDelta: 115 });
    expect(first.activeMembers).toBe(6);
    expect(first.tierDelta).toEqual({ member: 6 });
    expect(source.days.get(20_001)!.currencies.points!.issued).toBe(7);
    expect(source.weeks).toEqual(new Map([[100, 7]]));
    expect(source.months).toEqual(new Map([[300, 7]]));
  });

  it('keeps the program activated through the API, across a reopen', async () => {
    const dataDir = join(root, 'program');
    const store = openStore(dataDir);
    expect(store.storedProgram()).toBeUndefined();
    await store.storeProgram({ text: 'id: simple\n', activatedAtMs: 42 });
    expect(store.storedProgram()).toEqual({ text: 'id: simple\n', activatedAtMs: 42 });
    await store.close();
    expect(openStore(dataDir).storedProgram()).toEqual({ text: 'id: simple\n', activatedAtMs: 42 });
  });
});
