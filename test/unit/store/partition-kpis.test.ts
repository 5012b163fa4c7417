import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, type Database, type Key } from 'lmdb';
import { pack, unpack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor } from '../../../src/actors/actor.js';
import { dayKeyOf, emptyDay, mergeDay, type DayCounters } from '../../../src/reports/kpis.js';
import type { ReportSource } from '../../../src/reports/report.js';
import type { BatchRecord } from '../../../src/routing/batch-buffer.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { LMDB_OPEN_OPTIONS, LmdbStore, STORE_FORMAT_VERSION } from '../../../src/store/lmdb.js';
import {
  applyPartitionChanges,
  decodePartitionChanges,
  encodePartitionChanges,
  storeIdentity,
  TREE_KPIS,
  TREE_MEMBERS,
  type PartitionChanges,
} from '../../../src/store/partition-changes.js';
import { actorOptions, emptyStore, generatedRecords, partitionEntries, PARTITIONS, program } from '../../helpers/partition-stores.js';

/**
 * Cluster mode's KPI counters (issue 17): a store that records changes keeps
 * them per partition (tree `partitionKpis`, keys [partition, kind, period])
 * and puts them into each partition's changes, so they are in its changelog
 * records and move with it; a store that records nothing keeps them per
 * actor (tree `kpis`), as before. Either way the counts are the same.
 */
const root = mkdtempSync(join(tmpdir(), 'loyalty-partition-kpis-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** After every purchase's return window and pending period (the traffic ends 2026-12-01): the sweep has work, and counts it. */
const SWEEP_AT_MS = Date.parse('2027-03-01T00:00:00Z');
const ALL = Array.from({ length: PARTITIONS }, (_, partition) => partition);

function inBatches(records: readonly BatchRecord[], size = 128): BatchRecord[][] {
  const batches: BatchRecord[][] = [];
  for (let offset = 0; offset < records.length; offset += size) batches.push(records.slice(offset, offset + size));
  return batches;
}

async function feed(actor: Actor, records: readonly BatchRecord[]): Promise<void> {
  for (const batch of inBatches(records)) await actor.process(batch);
}

async function sweepAll(actor: Actor): Promise<void> {
  for (let sweeps = 0; sweeps < 50; sweeps++) if ((await actor.sweep(SWEEP_AT_MS, 500)).result.finished) return;
  throw new Error('the sweep did not finish');
}

/** Report sources summed (what an aggregator does across instances). */
function merged(...sources: ReportSource[]): ReportSource {
  const days = new Map<number, DayCounters>();
  const weeks = new Map<number, number>();
  const months = new Map<number, number>();
  for (const source of sources) {
    for (const [key, counters] of source.days) days.set(key, mergeDay(days.get(key) ?? emptyDay(), counters));
    for (const [key, active] of source.weeks) weeks.set(key, (weeks.get(key) ?? 0) + active);
    for (const [key, active] of source.months) months.set(key, (months.get(key) ?? 0) + active);
  }
  return { days, weeks, months };
}

const NOTHING: ReportSource = { days: new Map(), weeks: new Map(), months: new Map() };
const kpiWrites = (records: readonly PartitionChanges[]) => records.flatMap((changes) => changes.writes.filter(([tree]) => tree === TREE_KPIS).map((write) => ({ partition: changes.partition, write })));

describe('KPI counters kept per partition in cluster mode', () => {
  // Shared by the tests in order: the owner (recording) and a plain store fed the same traffic, then a handover.
  let owner: LmdbStore;
  let plain: LmdbStore;
  let ownerActor: Actor;
  let plainActor: Actor;
  /** The owner's records since the last reset, and all of them (what its partitions' changelogs hold). */
  const records: PartitionChanges[] = [];
  const history: PartitionChanges[] = [];
  const traffic = generatedRecords({ runId: 'kpis', members: 300, count: 3_000 });

  beforeAll(async () => {
    owner = await emptyStore(root, 'owner');
    owner.setChangeRecorder((changes) => {
      records.push(...changes);
      history.push(...changes);
    });
    plain = await emptyStore(root, 'plain');
    ownerActor = new Actor(owner, program, actorOptions);
    plainActor = new Actor(plain, program, actorOptions);
  });

  afterAll(async () => {
    await owner?.close();
    await plain?.close();
  });

  it('puts each commit\'s KPI deltas into its partitions\' changes as running totals, none per actor; a sweep\'s too; the same counts as single-instance mode', async () => {
    await feed(ownerActor, traffic);
    await feed(plainActor, traffic);
    const events = kpiWrites(records);
    expect(events.length).toBeGreaterThan(PARTITIONS * 3);
    records.length = 0;
    await sweepAll(ownerActor);
    await sweepAll(plainActor);
    // The sweep counts too (points maturing and expiring, tier reviews): on the day it ran, in the swept members' partitions.
    const sweepDay = dayKeyOf(SWEEP_AT_MS, program.utcOffsetMinutes);
    const swept = kpiWrites(records);
    expect(new Set(swept.filter(({ write: [, key] }) => key[1] === 'd' && key[2] === sweepDay).map(({ partition }) => partition)).size).toBeGreaterThan(PARTITIONS / 2);

    // Every KPI write is in its own partition's key range, a put (a whole total), and the last one of a key is what the store holds.
    const stored: Database<Buffer, Key[]> = owner.root.openDB({ name: 'partitionKpis', encoding: 'binary' });
    const last = new Map<string, Uint8Array>();
    for (const { partition, write: [, key, value] } of [...events, ...swept]) {
      expect(key[0]).toBe(partition);
      expect(['d', 'w', 'm']).toContain(key[1]);
      expect(Number.isInteger(key[2])).toBe(true);
      expect(value).toBeInstanceOf(Uint8Array);
      last.set(JSON.stringify(key), value!);
    }
    for (const [name, value] of last) expect(Buffer.from(value).equals(stored.get(JSON.parse(name) as Key[])!)).toBe(true);
    // A day's total decodes on its own (no msgpackr records shared within one store): another store can read it.
    const aDay = [...last].find(([name]) => (JSON.parse(name) as Key[])[1] === 'd')!;
    expect(unpack(aDay[1])).toMatchObject({ enrollments: expect.any(Number), currencies: expect.any(Object) });

    // Nothing per actor in cluster mode; per partition, the very counts single-instance mode keeps per actor.
    expect(owner.reportSource()).toEqual(NOTHING);
    const single = plain.reportSource();
    expect(single.days.size).toBeGreaterThan(30);
    expect(owner.reportSource(ALL)).toEqual(single);
    expect(owner.reportSource(new Set(ALL))).toEqual(single);
    // Single-instance mode writes nothing per partition, and a report given partitions reads its per-actor counters as before.
    for (const partition of ALL) expect(partitionEntries(plain.root, partition, (tree) => tree === TREE_KPIS).length).toBe(0);
    expect(plain.reportSource(ALL)).toEqual(single);
  }, 120_000);

  it('counts only the partitions asked for, each once', () => {
    const [a, b] = [3, 11];
    const each = ALL.map((partition) => owner.reportSource([partition]));
    expect(each[a]!.days.size).toBeGreaterThan(0);
    expect(owner.reportSource([b, a, a])).toEqual(merged(each[a]!, each[b]!));
    expect(merged(...each)).toEqual(owner.reportSource(ALL));
    expect(owner.reportSource([])).toEqual(NOTHING);
  });

  it('moves with a partition replayed from its records: the new owner reports what the old one did for it and counts on from there', async () => {
    const given = [2, 5, 9, 14];
    const kept = ALL.filter((partition) => !given.includes(partition));
    const next = await emptyStore(root, 'next-owner');
    const identity = storeIdentity(next.root);
    for (const partition of given) {
      // The old owner's records of the partition, through a changelog record's bytes.
      const tail = history.filter((changes) => changes.partition === partition).map((changes, index) => decodePartitionChanges(encodePartitionChanges(changes, index), { partition, ...identity }));
      await applyPartitionChanges(next.root, partition, tail);
    }
    expect(next.reportSource(given)).toEqual(owner.reportSource(given));
    expect(next.reportSource(given).days.size).toBeGreaterThan(0);
    expect(next.reportSource()).toEqual(NOTHING);

    // The new owner serves them and counts more events of them; the old owner keeps the rest (and a stale copy of these).
    const nextRecords: PartitionChanges[] = [];
    next.setChangeRecorder((changes) => {
      nextRecords.push(...changes);
    });
    const nextActor = new Actor(next, program, { ...actorOptions, bootId: 2, ownsPartitions: 'given' });
    for (const partition of given) nextActor.ownPartition(partition);
    const more = generatedRecords({ runId: 'kpis_more', members: 300, count: 1_500 }).map((record) => ({ ...record, streamSequence: 10_000 + record.streamSequence }));
    const moreOfGiven = more.filter((record) => given.includes(partitionOf(record.memberId, PARTITIONS)));
    expect(moreOfGiven.length).toBeGreaterThan(100);
    const stale = owner.reportSource(given);
    await feed(nextActor, moreOfGiven);
    // Its totals went on from the restored ones (read from the store, not started again from nothing).
    expect(kpiWrites(nextRecords).length).toBeGreaterThan(0);
    await feed(plainActor, moreOfGiven);
    // Each instance answering for the partitions it holds: together, exactly single-instance mode's counts.
    expect(merged(owner.reportSource(kept), next.reportSource(given))).toEqual(plain.reportSource());
    // The old owner's copy of a partition it let go is stale: counted too, it would count those partitions twice.
    expect(owner.reportSource(given)).toEqual(stale);
    expect(merged(owner.reportSource(ALL), next.reportSource(given))).not.toEqual(plain.reportSource());
    await next.close();
  }, 120_000);
});

describe('partition KPI totals in the store', () => {
  const day = (issued: number): DayCounters => {
    const counters = emptyDay();
    counters.currencies.points = { issued, redeemed: 0, expired: 0, adjusted: 0, clawedBack: 0, liabilityDelta: issued, redemptions: 0 };
    counters.enrollments = 1;
    return counters;
  };

  it('add up across commits issued before the one before completed (totals pending in this store count)', async () => {
    const store = await emptyStore(root, 'pending');
    const recorded: PartitionChanges[] = [];
    store.setChangeRecorder(async (changes) => {
      recorded.push(...changes);
      await new Promise((resolve) => setTimeout(resolve, 5)); // an append takes a while: the next commit starts meanwhile
    });
    const write = (issued: number) =>
      store.commit({ members: [], ledger: [], processed: [], partitionKpis: [{ partition: 4, actor: 0, days: [[20_000, day(issued)]], weeks: [[2_900, 1]], months: [[670, 1]] }] });
    await Promise.all([write(10), write(5), write(100)]);
    const source = store.reportSource([4]);
    expect(source.days.get(20_000)).toMatchObject({ enrollments: 3, currencies: { points: { issued: 115, liabilityDelta: 115 } } });
    expect(source.weeks).toEqual(new Map([[2_900, 3]]));
    expect(source.months).toEqual(new Map([[670, 3]]));
    // Each record holds the whole total after its commit (replaying any of them again changes nothing).
    const totals = recorded.map((changes) => unpack(changes.writes.find(([tree, key]) => tree === TREE_KPIS && key[1] === 'd')![2]!) as DayCounters);
    expect(totals.map((total) => total.currencies.points!.issued)).toEqual([10, 15, 115]);
    await store.close();
  });

  it('read what a restore put there, after this store wrote the partition before (no total kept from before it)', async () => {
    const store = await emptyStore(root, 'restored-under');
    store.setChangeRecorder(() => undefined);
    const write = (issued: number) => store.commit({ members: [], ledger: [], processed: [], partitionKpis: [{ partition: 7, actor: 0, days: [[20_000, day(issued)]], weeks: [], months: [] }] });
    await write(10);
    // Another owner's record of the partition (its total 500) replayed here while no actor of this store served it.
    const other = day(500);
    const record: PartitionChanges = {
      partition: 7,
      partitions: PARTITIONS,
      storeFormat: STORE_FORMAT_VERSION,
      writes: [[TREE_KPIS, [7, 'd', 20_000], pack(other)]],
      dueMark: null,
      watermark: 0,
    };
    await applyPartitionChanges(store.root, 7, record);
    await write(1);
    expect(store.reportSource([7]).days.get(20_000)!.currencies.points!.issued).toBe(501);
    await store.close();
  });

  it('a record written before the tree (no KPI writes) still decodes and applies; a data directory made before it opens and reports as before', async () => {
    const store = await emptyStore(root, 'older-record');
    const identity = storeIdentity(store.root);
    const before: PartitionChanges = { partition: 1, ...identity, writes: [[TREE_MEMBERS, [1, 'm-old', 2, 'e1'], pack(new Uint8Array([7]))]], dueMark: null, watermark: 3 };
    const decoded = decodePartitionChanges(encodePartitionChanges(before, 0), { partition: 1, ...identity });
    await applyPartitionChanges(store.root, 1, decoded);
    expect(Array.from(store.readProcessed(1, 'm-old', 'e1')!)).toEqual([7]);
    expect(store.reportSource([1])).toEqual(NOTHING);
    await store.close();

    // A data directory of this format as written before the tree existed: meta and per-actor counters only.
    const dataDir = join(root, 'before-the-tree');
    mkdirSync(join(dataDir, 'state'), { recursive: true });
    const raw = open({ path: join(dataDir, 'state'), maxDbs: 16, ...LMDB_OPEN_OPTIONS });
    await raw.openDB({ name: 'meta', encoding: 'msgpack' }).put('meta', { formatVersion: STORE_FORMAT_VERSION, partitions: PARTITIONS, createdAtMs: 0 });
    await raw.openDB({ name: 'kpis', encoding: 'msgpack' }).put(['d', 20_000, 0], day(42));
    await raw.close();
    const reopened = new LmdbStore({ dataDir, mapSizeBytes: 64 * 1024 * 1024, partitions: PARTITIONS });
    expect((await reopened.ensureMeta(PARTITIONS, 0)).formatVersion).toBe(STORE_FORMAT_VERSION);
    expect(reopened.reportSource().days.get(20_000)!.currencies.points!.issued).toBe(42);
    expect(reopened.reportSource(ALL)).toEqual(reopened.reportSource());
    await reopened.close();
  });
});
