import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { asBinary, open, type Database, type DatabaseOptions, type Key, type RootDatabase } from 'lmdb';
import { pack, unpack } from 'msgpackr';
import type { LedgerPage, LedgerQuery, MemberReads } from '../api/context.js';
import { assert } from '../domain/assert.js';
import type { LedgerEntry, MemberState } from '../domain/state.js';
import { EngineError } from '../config/errors.js';
import { emptyDay, mergeDay, type DayCounters } from '../reports/kpis.js';
import type { ReportSource } from '../reports/report.js';
import { partitionOf } from '../routing/partitioner.js';
import { lmdbCause, storeWriteError } from './commit-errors.js';
import { decodeLedger, encodeLedger, type StoredLedger } from './ledger-codec.js';
import { coreKeys, decodeCore, joinMember, memberRecords, type ItemKind, type MemberCore, type StoredCore, type StoredItem } from './member-records.js';
import { BatchChangeRecorder, PARTITION_TREES, TREE_DUE, TREE_INDEX, TREE_KPIS, TREE_MEMBERS, TREE_OUTBOX, type ChangeRecorder, type PartitionChanges, type ValueEncoder } from './partition-changes.js';
import type { ActorStore, BatchWrite, DueKey, KpiWrite, OutboxKey, StoreMeta, WalletRecords } from './types.js';

/**
 * LMDB layout (one environment in <dataDir>/state, opened by every actor
 * thread and the main thread; LMDB serialises the writers):
 *   meta       'meta' → StoreMeta; 'program' → the program activated through the API
 *   members    a member's records side by side, so one event's writes dirty one or two pages:
 *                [partition, memberId, 0]                 → MemberCore, as one flat row (member-records.ts): the state without its orders,
 *                                                            redemptions and vouchers, which it lists by key)
 *                [partition, memberId, 1, firstSeq]       → one applied event's LedgerEntry[], as rows (ledger-codec.ts)
 *                [partition, memberId, 2, eventId]        → encoded first outcome (the idempotency record)
 *                [partition, memberId, 3, kind, key]      → one order ('o'), redemption ('r') or voucher ('v');
 *                                                            written only when it changed (member-records.ts)
 *   index      [partition, memberId] → 1: the member list (one write per new member); a full sweep pass walks it
 *   due        [partition, dueMs, memberId] → 1: when the sweep next has work for a member, kept by
 *              every member write (its core records the key it holds), so a sweep reads only the
 *              members that are due instead of walking everyone
 *   outbox     [bootId, actor, batch] → encoded outcome messages (binary)
 *   partitionOutbox  cluster mode's outbox of a sweep instead (usePartitionOutbox): [partition, owner, bootId, actor, batch] →
 *              the sweep's outcome messages of that partition, so they move with it (partition-changes.ts)
 *   kpis       ['d', dayKey, actor] → DayCounters; ['w'|'m', weekKey|monthKey, actor] → active members
 *   partitionKpis  cluster mode's KPI counters instead (BatchWrite.partitionKpis): [partition, 'd', dayKey] → DayCounters,
 *              [partition, 'w'|'m', weekKey|monthKey] → active members, so they move with the partition (partition-changes.ts)
 *   budgets    [promotionId, actor] → { points, uses } of global promotion budgets
 * Keys start with the partition, so a partition is one key range that can one
 * day move to another instance. Why one tree for a member's records: LMDB
 * copies every page a transaction touches; records of one member kept apart in
 * three trees cost three random pages per event, side by side mostly one.
 */
export const STORE_FORMAT_VERSION = 5;
/**
 * Formats this engine reads and upgrades in place: 4 differs only in the
 * member core, a map there and a row in 5 (member-records.ts reads both).
 * The upgrade rewrites the meta record, so an engine that reads only 4 then
 * refuses the directory (ERR_STORE_FORMAT) instead of misreading rows.
 */
const STORE_FORMATS_UPGRADED = [4];

/**
 * How every thread opens the environment (they must agree: lmdb-js shares one
 * environment per process). overlappingSync is off, against lmdb-js's Linux
 * default (issue 14). With it on, a commit returns before its fsync, a third,
 * "flushed" meta page is written later by whichever writer next takes the
 * sync lock, the free-space search treats every transaction after the last
 * flushed one as still being read (mdb_find_oldest returns the synced txn id
 * instead of the previous one), and the first open after a crash chooses
 * between three meta pages (MDB_PREVSNAPSHOT): lmdb-js-only paths we do not
 * need. It did NOT fix the MDB_BAD_TXN "reserved freelist had a data entry
 * with zero-size" after a kill -9 (seen again in CI with this option off):
 * that is lmdb-js's mdb_freelist_save reading an uninitialised size, fixed
 * in the addon scripts/lmdb-native.mjs builds (docs/operations.md, "Crash
 * recovery"; lmdb-js #140, HarperFast/harper #685 #686 #689). The engine gains nothing from the delayed sync: an
 * actor acks only after `flushed`, so it waits for the fsync either way, and
 * lmdb-js still groups the puts of one event turn into one transaction.
 * Plain LMDB commits (data pages, fsync, then the meta page) are the path
 * LMDB itself guarantees across a crash.
 */
export const LMDB_OPEN_OPTIONS = Object.freeze({ overlappingSync: false, noSync: false, useWritemap: false, compression: false });

const STATE = 0;
const LEDGER = 1;
const PROCESSED = 2;
const ITEM = 3;

/** Where a commit sends a partition's record writes: straight to LMDB, or (with a change recorder) into the batch's changes first. */
interface RecordSink {
  put(partition: number, tree: number, key: Key[], value: unknown): void;
  remove(partition: number, tree: number, key: Key[]): void;
}

export interface LmdbStoreOptions {
  readonly dataDir: string;
  readonly mapSizeBytes: number;
  /** Needed for reads by member id (MemberReads); the partition count of the data directory. */
  readonly partitions?: number;
}

export interface StoredProgram {
  readonly text: string;
  readonly activatedAtMs: number;
}

export class LmdbStore implements ActorStore, MemberReads {
  readonly root: RootDatabase;
  private readonly meta: Database<unknown, string>;
  private readonly records: Database<StoredCore | StoredItem | StoredLedger | Uint8Array, (string | number)[]>;
  private readonly index: Database<number, [number, string]>;
  private readonly due: Database<number, [number, number, string]>;
  /**
   * The due time indexed for each state object this store read or wrote, so
   * a write knows which due key to replace without reading the core again.
   */
  private readonly indexedDue = new WeakMap<MemberState, number | null>();
  private readonly outbox: Database<Uint8Array, OutboxKey>;
  private readonly partitionOutboxTree: Database<Uint8Array, Key[]>;
  /** Cluster mode's outbox bookkeeping (usePartitionOutbox); undefined in single-instance mode. */
  private partitionOutbox: PartitionOutbox | undefined;
  private readonly kpis: Database<DayCounters | number, [string, number, number]>;
  private readonly partitionKpisTree: Database<DayCounters | number, [number, string, number]>;
  private readonly budgets: Database<{ points: number; uses: number }, [string, number]>;
  private partitions: number | undefined;
  /** The partition trees by their number in partition-changes.ts (PARTITION_TREES), for the record sinks. */
  private readonly partitionTrees: readonly Database<unknown, Key[]>[];
  /** Cluster mode's hook (setChangeRecorder); undefined in single-instance mode, where commit records nothing. */
  private changeRecorder: ChangeRecorder | undefined;
  /** The environment's directory and map size, for the messages of failed writes. */
  private readonly path: string;
  private readonly mapSizeBytes: number;

  constructor(options: LmdbStoreOptions) {
    const path = join(options.dataDir, 'state');
    this.path = path;
    this.mapSizeBytes = options.mapSizeBytes;
    try {
      mkdirSync(path, { recursive: true });
      this.root = open({ path, maxDbs: 16, mapSize: options.mapSizeBytes, ...LMDB_OPEN_OPTIONS });
    } catch (error) {
      throw new EngineError('ERR_STORE_OPEN', `cannot open the LMDB store at ${path}: ${(error as Error).message}`, { cause: error });
    }
    this.meta = this.root.openDB({ name: 'meta', encoding: 'msgpack' });
    // Plain msgpack maps, no records: msgpackr's records repeat their structure
    // definitions in every value unless shared, and a member's core has a dozen
    // shapes; the bench measured 45 µs to encode a core with records, 12 without.
    this.records = this.root.openDB({ name: 'members', encoding: 'msgpack', useRecords: false } as DatabaseOptions & { name: string });
    this.index = this.root.openDB({ name: 'index', encoding: 'msgpack' });
    this.due = this.root.openDB({ name: 'due', encoding: 'msgpack' });
    this.outbox = this.root.openDB({ name: 'outbox', encoding: 'binary' });
    this.partitionOutboxTree = this.root.openDB({ name: 'partitionOutbox', encoding: 'binary' });
    this.kpis = this.root.openDB({ name: 'kpis', encoding: 'msgpack' });
    // No msgpackr records: a changelog record carries these bytes to another store, where structures shared
    // within this one would not be known (the same reason as `members`). A new tree, not a new format: a data
    // directory without it opens as before (lmdb-js creates the empty tree), and nothing else changes meaning.
    this.partitionKpisTree = this.root.openDB({ name: 'partitionKpis', encoding: 'msgpack', useRecords: false } as DatabaseOptions & { name: string });
    this.budgets = this.root.openDB({ name: 'budgets', encoding: 'msgpack' });
    this.partitionTrees = [this.records, this.index, this.due, this.partitionOutboxTree, this.partitionKpisTree] as unknown as Database<unknown, Key[]>[];
    assert(this.partitionTrees.length === PARTITION_TREES.length, 'one database per partition tree');
    // The data directory's own partition count wins: member records are found by it.
    this.partitions = (this.meta.get('meta') as StoreMeta | undefined)?.partitions ?? options.partitions;
  }

  /** Creates the meta record on first use; refuses a data directory made with another partition count. */
  async ensureMeta(partitions: number, nowMs: number): Promise<StoreMeta> {
    const existing = this.meta.get('meta') as StoreMeta | undefined;
    if (existing !== undefined) {
      if (existing.formatVersion !== STORE_FORMAT_VERSION && !STORE_FORMATS_UPGRADED.includes(existing.formatVersion)) {
        throw new EngineError('ERR_STORE_FORMAT', `data directory has store format ${existing.formatVersion}, this engine reads ${[...STORE_FORMATS_UPGRADED, STORE_FORMAT_VERSION].join(' and ')}`);
      }
      if (existing.partitions !== partitions) {
        throw new EngineError(
          'ERR_PARTITIONS_MISMATCH',
          `data directory was created with ${existing.partitions} partitions; LOYALTY_PARTITIONS=${partitions} would move members between partitions. Use ${existing.partitions}.`,
        );
      }
      this.partitions = partitions;
      if (existing.formatVersion === STORE_FORMAT_VERSION) return existing;
      const upgraded: StoreMeta = { ...existing, formatVersion: STORE_FORMAT_VERSION };
      await this.written(this.meta.put('meta', upgraded));
      await this.written(this.root.flushed);
      return upgraded;
    }
    const meta: StoreMeta = { formatVersion: STORE_FORMAT_VERSION, partitions, createdAtMs: nowMs };
    await this.written(this.meta.put('meta', meta));
    await this.written(this.root.flushed);
    this.partitions = partitions;
    return meta;
  }

  readMember(partition: number, memberId: string): MemberState | undefined {
    const core = this.readCore(partition, memberId);
    if (core === undefined) return undefined;
    const state = this.joinItems(core, [partition, memberId, ITEM], [partition, memberId, ITEM + 1]);
    if (core.dueMs !== undefined) this.indexedDue.set(state, core.dueMs);
    return state;
  }

  indexedDueMs(state: MemberState): number | null | undefined {
    return this.indexedDue.get(state);
  }

  dueMembers(partition: number, nowMs: number, after: DueKey | undefined, limit: number): DueKey[] {
    assert(limit > 0, 'due members: limit must be positive');
    const keys: DueKey[] = [];
    const start: [number, number, string] | [number] = after === undefined ? [partition] : [partition, after.dueMs, after.memberId];
    // Every due key of the partition sorts before [partition, nowMs, <any id>] ... [partition + 1].
    for (const key of this.due.getKeys({ start, end: [partition, nowMs + 1], limit: limit + 1 })) {
      if (after !== undefined && key[1] === after.dueMs && key[2] === after.memberId) continue;
      keys.push({ dueMs: key[1], memberId: key[2] });
      if (keys.length >= limit) break;
    }
    return keys;
  }

  private dueKeyOf(partition: number, base: MemberState): number | null {
    const known = this.indexedDue.get(base);
    if (known !== undefined) return known;
    return this.readCore(partition, base.memberId)?.dueMs ?? null;
  }

  dueIndexDigest(partition: number): number | undefined {
    return this.meta.get(`due:${partition}`) as number | undefined;
  }

  /** The member without orders and redemptions: the core and its voucher records only (what a wallet shows). */
  readWalletMember(partition: number, memberId: string): MemberState | undefined {
    const core = this.readCore(partition, memberId);
    if (core === undefined) return undefined;
    const vouchersOnly: MemberCore = { ...core, orders: [], redemptions: [], vouchers: coreKeys(core, 'v'), orderKeys: undefined, redemptionKeys: undefined, voucherKeys: undefined };
    return this.joinItems(vouchersOnly, [partition, memberId, ITEM, 'v'], [partition, memberId, ITEM, 'w']);
  }

  private readCore(partition: number, memberId: string): MemberCore | undefined {
    const stored = this.records.get([partition, memberId, STATE]) as StoredCore | undefined;
    const core = stored === undefined ? undefined : decodeCore(stored);
    assert(core === undefined || core.memberId === memberId, 'stored member state has another member id');
    return core;
  }

  /** Joins a core with its item records, read in one range (they sit side by side after the core). */
  private joinItems(core: MemberCore, start: (string | number)[], end: (string | number)[]): MemberState {
    if (coreKeys(core, 'o').length === 0 && coreKeys(core, 'r').length === 0 && coreKeys(core, 'v').length === 0) return joinMember(core, () => undefined);
    const items = new Map<string, StoredItem>();
    for (const { key, value } of this.records.getRange({ start, end })) {
      items.set(`${key[3] as ItemKind}${key[4] as string}`, value as StoredItem);
    }
    return joinMember(core, (kind, key) => items.get(`${kind}${key}`));
  }

  scanMembers(partition: number, afterMemberId: string | undefined, limit: number): MemberState[] {
    const members: MemberState[] = [];
    const start: [number, string] | [number] = afterMemberId === undefined ? [partition] : [partition, afterMemberId];
    for (const { key } of this.index.getRange({ start, end: [partition + 1], limit: limit + 1 })) {
      if (afterMemberId !== undefined && key[1] === afterMemberId) continue;
      const state = this.readMember(partition, key[1]);
      if (state !== undefined) members.push(state);
      if (members.length >= limit) break;
    }
    return members;
  }

  /** Committed global budget usage, summed over actors. */
  budgetTotals(): Map<string, { points: number; uses: number }> {
    const totals = new Map<string, { points: number; uses: number }>();
    for (const { key, value } of this.budgets.getRange({})) {
      const total = totals.get(key[0]) ?? { points: 0, uses: 0 };
      totals.set(key[0], { points: total.points + value.points, uses: total.uses + value.uses });
    }
    return totals;
  }

  readProcessed(partition: number, memberId: string, eventId: string): Uint8Array | undefined {
    return this.records.get([partition, memberId, PROCESSED, eventId]) as Uint8Array | undefined;
  }

  /**
   * Cluster mode: every commit hands `recorder` each partition's share of the
   * batch (partition-changes.ts) before anything of it is written, and writes
   * those very bytes after. When the recorder returns a promise (the append
   * to the partition's changelog, the commit point), the commit waits for it
   * and writes nothing if it rejects: a batch the changelog refused (a fenced
   * owner) is not committed here either. Undefined turns recording off.
   */
  get recordingChanges(): boolean {
    return this.changeRecorder !== undefined;
  }

  setChangeRecorder(recorder: ChangeRecorder | undefined): void {
    if (recorder !== undefined) this.requirePartitions();
    this.changeRecorder = recorder;
  }

  /**
   * Plain asynchronous puts, all issued in one synchronous run: lmdb-js
   * commits the writes of one event turn as one transaction, and applies them
   * on its own write thread, so the actor's thread never holds LMDB's single
   * write lock (two actors' puts would otherwise take turns). Every put of a
   * transaction returns that transaction's promise; a large batch can span two
   * (lmdb-js starts writing once enough puts are queued), so every distinct
   * promise is awaited: a failed transaction's promise left unawaited would be
   * an unhandled rejection, which kills the actor's thread (issue 14, disk full).
   */
  commit(write: BatchWrite): Promise<void> {
    // Not async itself: single-instance mode's commit is the one promise it always was.
    return write.partitionKpis === undefined ? this.commitBatch(write, undefined) : this.commitWithPartitionKpis(write);
  }

  private async commitWithPartitionKpis(write: BatchWrite): Promise<void> {
    // Whatever happens to the commit (an append refused, a write failed), its KPI totals stop being pending.
    const kpisPut = new Map<string, { value: unknown }>();
    try {
      await this.commitBatch(write, kpisPut);
    } finally {
      this.settledPartitionKpis(kpisPut);
    }
  }

  /** The commit; `kpisPut` collects the partition KPI totals it puts (cluster mode), undefined without any. */
  private async commitBatch(write: BatchWrite, kpisPut: Map<string, { value: unknown }> | undefined): Promise<void> {
    const transactions: Promise<unknown>[] = [];
    let last: Promise<unknown> | undefined;
    const track = (promise: Promise<unknown>): void => {
      if (promise === last) return;
      last = promise;
      transactions.push(promise);
    };
    const recorder = this.changeRecorder;
    /** The recorder's call for when this batch is written. */
    let written: (() => void) | undefined;
    const recorded = recorder === undefined ? undefined : new BatchChangeRecorder(this.valueEncoders(), this.requirePartitions(), STORE_FORMAT_VERSION);
    const sink: RecordSink = recorded ?? {
      put: (_partition, tree, key, value) => track(this.partitionTrees[tree]!.put(key, value)),
      remove: (_partition, tree, key) => track(this.partitionTrees[tree]!.remove(key)),
    };
    for (const { partition, state, created, base, dueMs } of write.members) {
      assert(dueMs === null || Number.isFinite(dueMs), 'a due time is a finite number or null');
      const changes = memberRecords(state, base, dueMs);
      for (const [kind, key, item] of changes.puts) sink.put(partition, TREE_MEMBERS, [partition, state.memberId, ITEM, kind, key], item);
      for (const [kind, key] of changes.removes) sink.remove(partition, TREE_MEMBERS, [partition, state.memberId, ITEM, kind, key]);
      sink.put(partition, TREE_MEMBERS, [partition, state.memberId, STATE], changes.core);
      if (created) sink.put(partition, TREE_INDEX, [partition, state.memberId], 1);
      // The key this member holds in the due index: known from the base's read or write, else from its core.
      const indexed = base === undefined ? null : this.dueKeyOf(partition, base);
      if (indexed !== dueMs) {
        if (indexed !== null) sink.remove(partition, TREE_DUE, [partition, indexed, state.memberId]);
        if (dueMs !== null) sink.put(partition, TREE_DUE, [partition, dueMs, state.memberId], 1);
      }
      this.indexedDue.set(state, dueMs);
    }
    if (recorded === undefined) {
      for (const { partition, programDigest } of write.dueIndexMarks ?? []) track(this.meta.put(`due:${partition}`, programDigest));
    }
    for (const { partition, entries } of write.ledger) {
      const first = entries[0];
      assert(first !== undefined, 'a ledger record holds at least one entry');
      sink.put(partition, TREE_MEMBERS, [partition, first.memberId, LEDGER, first.seq], encodeLedger(entries));
    }
    for (const { partition, memberId, eventId, outcomes } of write.processed) {
      sink.put(partition, TREE_MEMBERS, [partition, memberId, PROCESSED, eventId], outcomes);
    }
    // Cluster mode's KPI counters: through the sink like every other write of the partition, so the changelog record holds them.
    if (write.partitionKpis !== undefined && kpisPut !== undefined) this.addPartitionKpis(write.partitionKpis, sink, kpisPut);
    // Cluster mode: outcomes without input (a sweep's) go into their partitions' changes, and leave them once
    // acknowledged (usePartitionOutbox). An event batch's stay in the per-boot outbox: its events come again to the
    // partition's next owner, whose consumer resumes after the published watermark, and their first outcomes with them.
    const partitionOutbox = recorded === undefined ? undefined : this.partitionOutbox;
    const outboxMoves = partitionOutbox !== undefined && write.outbox !== undefined && (write.watermarks === undefined || write.watermarks.length === 0);
    let outboxRemovals = write.outboxRemovals ?? [];
    if (recorder !== undefined && recorded !== undefined) {
      for (const { partition, programDigest } of write.dueIndexMarks ?? []) recorded.dueMark(partition, programDigest);
      for (const { partition, sequence } of write.watermarks ?? []) recorded.watermark(partition, sequence);
      if (partitionOutbox !== undefined) {
        if (outboxMoves) partitionOutbox.entry(write.outbox!.key, write.outbox!.messages, recorded);
        outboxRemovals = partitionOutbox.acknowledged(outboxRemovals, recorded);
      }
      const changes = recorded.changes();
      if (changes.length > 0) {
        // Nothing is written before this: the changelog append (cluster mode's commit point) comes first.
        const appended = recorder(changes);
        const after = appended instanceof Promise ? await appended : appended;
        if (typeof after === 'function') written = after;
        this.writeChanges(changes, track);
      }
    }
    if (write.kpis !== undefined) this.addKpis(write.kpis, track);
    if (write.budgets !== undefined) {
      const actor = write.budgets.actor;
      for (const [promotionId, points, uses] of write.budgets.usage) {
        const key: [string, number] = [promotionId, actor];
        const name = `b\u0000${promotionId}\u0000${actor}`;
        const total = this.runningTotal(name, () => this.budgets.get(key) ?? { points: 0, uses: 0 }) as { points: number; uses: number };
        const next = { points: total.points + points, uses: total.uses + uses };
        this.running.set(name, next);
        track(this.budgets.put(key, next));
      }
    }
    if (write.outbox !== undefined && !outboxMoves) track(this.outbox.put(write.outbox.key, write.outbox.messages));
    for (const key of outboxRemovals) track(this.outbox.remove(key));
    // Each one awaited (and so handled) even when an earlier one failed.
    const settled = await Promise.allSettled(transactions.map((transaction) => this.written(transaction)));
    for (const result of settled) if (result.status === 'rejected') throw result.reason;
    written?.();
  }

  /** The values' encoders of the partition trees: the ones their puts would use, so recorded bytes are the stored bytes. */
  private valueEncoders(): readonly ValueEncoder[] {
    this.encoders ??= this.partitionTrees.map((tree, number) => {
      // The partition outbox's values are already the packed outcomes: stored as they are.
      if (number === TREE_OUTBOX) return PACKED_AS_IS;
      const encoder = (tree as unknown as { encoder?: ValueEncoder }).encoder;
      assert(encoder !== undefined, 'a msgpack tree has its encoder');
      return encoder;
    });
    return this.encoders;
  }

  private encoders: readonly ValueEncoder[] | undefined;

  /** Writes recorded changes as they are (asBinary: no encoding again). */
  private writeChanges(changes: readonly PartitionChanges[], track: (write: Promise<unknown>) => void): void {
    for (const { partition, writes, dueMark } of changes) {
      for (const [tree, key, value] of writes) {
        const database = this.partitionTrees[tree]!;
        track(value === null ? database.remove(key) : database.put(key, asBinary(value)));
      }
      if (dueMark !== null) track(this.meta.put(`due:${partition}`, dueMark));
    }
  }

  /**
   * Awaits a write's promise; a failed commit (lmdb-js's generic "Commit
   * failed") becomes an EngineError naming its cause and what to do
   * (commit-errors.ts: a full disk, a full map, an I/O error).
   */
  private async written<T>(write: Promise<T>): Promise<T> {
    try {
      return await write;
    } catch (error) {
      throw storeWriteError(await lmdbCause(error), { path: this.path, mapSizeBytes: this.mapSizeBytes });
    }
  }

  /**
   * Running totals this instance writes (its actor is the only writer of its
   * KPI and budget keys): read once from the store, then kept in memory, so a
   * commit never reads a value an earlier, still uncommitted put will change.
   */
  private readonly running = new Map<string, unknown>();

  private runningTotal(key: string, load: () => unknown): unknown {
    if (!this.running.has(key)) this.running.set(key, load());
    return this.running.get(key);
  }

  private addKpis(kpis: KpiWrite, track: (write: Promise<unknown>) => void): void {
    for (const [dayKey, counters] of kpis.days) {
      const key: [string, number, number] = ['d', dayKey, kpis.actor];
      const name = `d\u0000${dayKey}\u0000${kpis.actor}`;
      // put() encodes the value at once, so the running total can be updated in place.
      const total = mergeDay(this.runningTotal(name, () => (this.kpis.get(key) as DayCounters | undefined) ?? emptyDay()) as DayCounters, counters);
      track(this.kpis.put(key, total));
    }
    for (const [kind, entries] of [['w', kpis.weeks], ['m', kpis.months]] as const) {
      for (const [periodKey, active] of entries) {
        const key: [string, number, number] = [kind, periodKey, kpis.actor];
        const name = `${kind}\u0000${periodKey}\u0000${kpis.actor}`;
        const next = (this.runningTotal(name, () => (this.kpis.get(key) as number | undefined) ?? 0) as number) + active;
        this.running.set(name, next);
        track(this.kpis.put(key, next));
      }
    }
  }

  /**
   * Cluster mode's KPI counters: each partition's deltas added to its running
   * totals (whole values, never deltas, in the records: a record replayed
   * again leaves the same totals). A total is read from the store, or from a
   * commit of this store whose writes have not completed yet (`pendingKpis`).
   * Not cached past its commit, unlike `running`: a partition this store lets
   * go may come back restored with another owner's counts, which only the
   * store holds. `put` collects what this commit put, for `settledPartitionKpis`.
   */
  private addPartitionKpis(writes: NonNullable<BatchWrite['partitionKpis']>, sink: RecordSink, put: Map<string, { value: unknown }>): void {
    const total = (name: string, key: [number, string, number], next: (stored: unknown) => unknown): unknown => {
      const stored = this.pendingKpis.has(name) ? this.pendingKpis.get(name)!.value : this.partitionKpisTree.get(key);
      const entry = { value: next(stored) };
      this.pendingKpis.set(name, entry);
      put.set(name, entry);
      return entry.value;
    };
    for (const { partition, days, weeks, months } of writes) {
      assert(Number.isInteger(partition) && partition >= 0 && partition < this.requirePartitions(), 'KPI counters of a partition out of range');
      for (const [dayKey, counters] of days) {
        const key: [number, string, number] = [partition, 'd', dayKey];
        // A fresh object each commit: a pending commit's total is never changed under it.
        const value = total(`${partition}\u0000d\u0000${dayKey}`, key, (stored) => mergeDay(mergeDay(emptyDay(), (stored as DayCounters | undefined) ?? emptyDay()), counters));
        sink.put(partition, TREE_KPIS, key, value);
      }
      for (const [kind, entries] of [['w', weeks], ['m', months]] as const) {
        for (const [periodKey, active] of entries) {
          const key: [number, string, number] = [partition, kind, periodKey];
          const value = total(`${partition}\u0000${kind}\u0000${periodKey}`, key, (stored) => ((stored as number | undefined) ?? 0) + active);
          sink.put(partition, TREE_KPIS, key, value);
        }
      }
    }
  }

  /** A commit's KPI writes completed (or failed: the actor stops then): its totals are read from the store from now on, unless a later commit put another. */
  private settledPartitionKpis(put: Map<string, { value: unknown }>): void {
    for (const [name, entry] of put) if (this.pendingKpis.get(name) === entry) this.pendingKpis.delete(name);
  }

  /** Partition KPI totals put by commits whose writes have not completed yet (name → the commit's entry). */
  private readonly pendingKpis = new Map<string, { value: unknown }>();

  /** Resolves once every commit so far is on disk (at once with overlappingSync off; kept so the ack path never depends on that). */
  async durable(): Promise<void> {
    await this.written(this.root.flushed);
  }

  async removeOutbox(key: OutboxKey): Promise<void> {
    await this.written(this.outbox.remove(key));
  }

  /**
   * Cluster mode: the outbox entries of outcomes without input (a sweep's:
   * expiries, pending points maturing, tier reviews) are kept in their
   * partitions' key space (tree `partitionOutbox`, keys
   * `[partition, owner, bootId, actor, batch]`) instead of the per-boot
   * outbox, so they are part of the partition's changelog records and
   * snapshots and move with it: a new owner publishes again what the last one
   * committed and did not see acknowledged (`partitionOutboxEntries` after its
   * restore). An event batch's entry stays in the per-boot outbox: the next
   * owner's consumer resumes after the published watermark, so those events
   * come again as duplicates with their first outcomes, and the changelog
   * records do not carry the outcomes twice. An entry is split by partition
   * (the member id leads each message id). An entry the outcome
   * stream acknowledged (the actor's `outboxRemovals`, or
   * `acknowledgePartitionOutbox` for a restored one) is removed by the next
   * record of its partition: a later batch's, or one of the owner's own
   * (`takeAcknowledgedOutbox`), never in a record of another partition, so a
   * partition lost to another owner cannot make the append of a batch of
   * other partitions refused. `owner` (the instance id) keeps the keys of
   * two instances apart (boot ids are start times and may be equal).
   * Requires a change recorder; single-instance mode never calls it.
   */
  usePartitionOutbox(owner: string): void {
    assert(owner.length > 0, 'a partition outbox needs the owner\'s id');
    this.partitionOutbox = new PartitionOutbox(owner, this.requirePartitions());
  }

  /** A restored entry of `partition` (its stored key) was published again and acknowledged: removed with the partition's next record. */
  acknowledgePartitionOutbox(partition: number, key: Key[]): void {
    assert(this.partitionOutbox !== undefined, 'the partition outbox is not in use');
    assert(key[0] === partition, 'an outbox key of another partition');
    this.partitionOutbox.acknowledge(partition, key);
  }

  /** The stored keys of the partition's acknowledged entries, handed over once: the caller's record of the partition removes them. */
  takeAcknowledgedOutbox(partition: number): Key[][] {
    return this.partitionOutbox?.take(partition) ?? [];
  }

  /** The partitions that have acknowledged entries waiting for a record to remove them. */
  partitionsWithAcknowledgedOutbox(): number[] {
    return this.partitionOutbox?.waiting() ?? [];
  }

  /**
   * The partition is handed over or lost: its entries not acknowledged stay
   * in its changelog for its next owner; this store no longer removes any of
   * them (nothing of the partition may be appended by this owner any more).
   */
  releasePartitionOutbox(partition: number): void {
    this.partitionOutbox?.release(partition);
  }

  /** The partition's outbox entries as stored, in key order (after a restore: what its last owner left unacknowledged). */
  *partitionOutboxEntries(partition: number): Generator<{ key: Key[]; messages: Uint8Array }> {
    for (const { key, value } of this.partitionOutboxTree.getRange({ start: [partition], end: [partition + 1] })) yield { key: key as Key[], messages: value };
  }

  /** Unpublished outcome batches, oldest first (for re-publishing after a restart). */
  *outboxEntries(): Generator<{ key: OutboxKey; messages: Uint8Array }> {
    for (const { key, value } of this.outbox.getRange({})) yield { key: key as OutboxKey, messages: value };
  }

  /** A member's ledger entries in sequence order. */
  *ledgerOf(partition: number, memberId: string, afterSeq = 0): Generator<LedgerEntry> {
    for (const { value } of this.records.getRange({ start: [partition, memberId, LEDGER, 0], end: [partition, memberId, LEDGER, Number.MAX_SAFE_INTEGER] })) {
      for (const entry of decodeLedger(value as StoredLedger)) if (entry.seq > afterSeq) yield entry;
    }
  }

  /** All members of one partition, in key order. */
  *membersOf(partition: number): Generator<MemberState> {
    for (const { key } of this.index.getRange({ start: [partition], end: [partition + 1] })) {
      const state = this.readMember(partition, key[1]);
      if (state !== undefined) yield state;
    }
  }

  // MemberReads, for the API: the partition comes from the member id.
  member(memberId: string): MemberState | undefined {
    return this.readMember(this.partitionOf(memberId), memberId);
  }

  walletMember(memberId: string): MemberState | undefined {
    return this.readWalletMember(this.partitionOf(memberId), memberId);
  }

  /** The records `walletMember` reads, undecoded (for a cache of rendered wallets; see WalletRecords). */
  walletRecords(): WalletRecords {
    const raw = this.root.openDB({ name: 'members', encoding: 'binary' }) as Database<Uint8Array, (string | number)[]>;
    return {
      partitionOf: (memberId) => this.partitionOf(memberId),
      // getBinaryFast: lmdb-js copies the value into one reused buffer, no allocation per read.
      core: (partition, memberId) => raw.getBinaryFast([partition, memberId, STATE]),
      voucher: (partition, memberId, code) => raw.getBinaryFast([partition, memberId, ITEM, 'v', code]),
    };
  }

  ledger(memberId: string, query: LedgerQuery): LedgerPage {
    assert(query.limit > 0, 'ledger page limit must be positive');
    const partition = this.partitionOf(memberId);
    const entries: LedgerEntry[] = [];
    let lastSeq: number | undefined;
    let more = false;
    // Records hold one event's entries; start from the record holding afterSeq + 1.
    let startSeq = 0;
    for (const { key } of this.records.getRange({ start: [partition, memberId, LEDGER, query.afterSeq + 1], end: [partition, memberId, LEDGER, -1], reverse: true, limit: 1 })) {
      startSeq = key[3] as number;
    }
    for (const { value } of this.records.getRange({ start: [partition, memberId, LEDGER, startSeq], end: [partition, memberId, LEDGER, Number.MAX_SAFE_INTEGER] })) {
      for (const entry of decodeLedger(value as StoredLedger)) {
        if (entry.seq <= query.afterSeq) continue;
        if (entries.length >= query.limit) {
          more = true;
          break;
        }
        lastSeq = entry.seq;
        if (query.kinds !== undefined && !query.kinds.includes(entry.kind)) continue;
        if (query.fromMs !== undefined && entry.occurredAtMs < query.fromMs) continue;
        if (query.toMs !== undefined && entry.occurredAtMs >= query.toMs) continue;
        entries.push(entry);
      }
      if (more) break;
    }
    return { entries, nextAfterSeq: more ? lastSeq : undefined };
  }

  /**
   * Every KPI counter kept per actor, merged across actors (small: one record
   * per day, week and month per actor), plus, when `partitions` is given,
   * the counters kept per partition (cluster mode, tree `partitionKpis`) of
   * those partitions only: pass the partitions this instance owns now. A
   * partition it let go keeps its last copy here until it is restored again,
   * and its new owner answers for it: counting that copy too would count the
   * partition twice. Without `partitions`, the per-actor counters alone (as
   * before the partition tree).
   */
  reportSource(partitions?: ReadonlySet<number> | readonly number[]): ReportSource {
    const days = new Map<number, DayCounters>();
    const weeks = new Map<number, number>();
    const months = new Map<number, number>();
    const add = (kind: unknown, periodKey: number, value: DayCounters | number): void => {
      if (kind === 'd') days.set(periodKey, mergeDay(days.get(periodKey) ?? emptyDay(), value as DayCounters));
      else if (kind === 'w') weeks.set(periodKey, (weeks.get(periodKey) ?? 0) + (value as number));
      else if (kind === 'm') months.set(periodKey, (months.get(periodKey) ?? 0) + (value as number));
    };
    for (const { key, value } of this.kpis.getRange({})) {
      const [kind, periodKey] = key as [string, number, number];
      add(kind, periodKey, value);
    }
    if (partitions !== undefined) {
      // Each partition once, in order: a list given with repeats must not count one twice.
      for (const partition of [...new Set(partitions)].sort((a, b) => a - b)) {
        assert(Number.isInteger(partition) && partition >= 0, 'a report\'s partitions are partition numbers');
        for (const { key, value } of this.partitionKpisTree.getRange({ start: [partition], end: [partition + 1] })) {
          const [, kind, periodKey] = key as [number, string, number];
          add(kind, periodKey, value);
        }
      }
    }
    return { days, weeks, months };
  }

  storedProgram(): StoredProgram | undefined {
    return this.meta.get('program') as StoredProgram | undefined;
  }

  async storeProgram(program: StoredProgram): Promise<void> {
    await this.written(this.meta.put('program', program));
    await this.written(this.root.flushed);
  }

  async close(): Promise<void> {
    await this.root.close();
  }

  private partitionOf(memberId: string): number {
    return partitionOf(memberId, this.requirePartitions());
  }

  private requirePartitions(): number {
    assert(this.partitions !== undefined, 'the store needs the partition count for records by member id');
    return this.partitions;
  }
}

/** The partition outbox's values: the packed outcomes, written as they are. */
const PACKED_AS_IS: ValueEncoder = {
  encode(value: unknown): Uint8Array {
    assert(value instanceof Uint8Array, 'a partition outbox value is the packed outcomes');
    return value;
  },
};

/**
 * Cluster mode's outbox bookkeeping (LmdbStore.usePartitionOutbox), in the
 * actor's thread: which partitions each of its entries was split into (to
 * remove their parts once the outcome stream acknowledged the batch), and the
 * acknowledged parts waiting for a record of their partition.
 */
class PartitionOutbox {
  /** `bootId:actor:batch` → the entry's key and the partitions holding a part of it, not yet acknowledged. */
  private readonly unacknowledged = new Map<string, { key: OutboxKey; partitions: number[] }>();
  /** Per partition, the stored keys of acknowledged parts (removed by the partition's next record). */
  private readonly removable = new Map<number, Key[][]>();

  constructor(
    private readonly owner: string,
    private readonly partitions: number,
  ) {}

  /** Splits a batch's entry by partition into the batch's changes. */
  entry(key: OutboxKey, packed: Uint8Array, recorded: BatchChangeRecorder): void {
    const byPartition = new Map<number, Uint8Array[]>();
    for (const perEvent of unpack(packed) as Uint8Array[]) {
      const partition = this.partitionOfMessages(perEvent);
      if (partition === undefined) continue; // an event without outcomes: nothing to publish
      let list = byPartition.get(partition);
      if (list === undefined) byPartition.set(partition, (list = []));
      list.push(perEvent);
    }
    for (const [partition, list] of byPartition) recorded.put(partition, TREE_OUTBOX, this.storedKey(partition, key), pack(list));
    if (byPartition.size > 0) this.unacknowledged.set(key.join(':'), { key, partitions: [...byPartition.keys()] });
  }

  /**
   * The actor's acknowledged entries: each part of a moved one removed now
   * when this batch changes its partition anyway, else later. Returns the
   * keys that are the per-boot outbox's (an event batch's, or a moved entry
   * whose partitions were all released: removing it there is harmless).
   */
  acknowledged(keys: readonly OutboxKey[], recorded: BatchChangeRecorder): OutboxKey[] {
    const perBoot: OutboxKey[] = [];
    for (const key of keys) {
      const name = key.join(':');
      const entry = this.unacknowledged.get(name);
      if (entry === undefined) {
        perBoot.push(key);
        continue;
      }
      this.unacknowledged.delete(name);
      for (const partition of entry.partitions) this.acknowledge(partition, this.storedKey(partition, key));
    }
    if (this.removable.size > 0) {
      for (const partition of [...recorded.partitionsChanged()]) {
        for (const stored of this.take(partition)) recorded.remove(partition, TREE_OUTBOX, stored);
      }
    }
    return perBoot;
  }

  acknowledge(partition: number, stored: Key[]): void {
    let list = this.removable.get(partition);
    if (list === undefined) this.removable.set(partition, (list = []));
    list.push(stored);
  }

  take(partition: number): Key[][] {
    const list = this.removable.get(partition) ?? [];
    this.removable.delete(partition);
    return list;
  }

  waiting(): number[] {
    return [...this.removable.keys()].sort((a, b) => a - b);
  }

  release(partition: number): void {
    this.removable.delete(partition);
    for (const [name, entry] of this.unacknowledged) {
      const at = entry.partitions.indexOf(partition);
      if (at < 0) continue;
      entry.partitions.splice(at, 1);
      if (entry.partitions.length === 0) this.unacknowledged.delete(name);
    }
  }

  private storedKey(partition: number, key: OutboxKey): Key[] {
    return [partition, this.owner, ...key];
  }

  /** One event's (or swept member's) outcome messages all concern its member, whose id leads each message id (`<memberId>:…`). */
  private partitionOfMessages(perEvent: Uint8Array): number | undefined {
    const messages = unpack(perEvent) as [string, string, string][];
    assert(Array.isArray(messages), 'an outbox entry holds lists of outcome messages');
    if (messages.length === 0) return undefined;
    const messageId = messages[0]![1];
    assert(typeof messageId === 'string', 'an outbox entry holds outcome messages');
    const end = messageId.indexOf(':');
    assert(end > 0, 'an outcome message id starts with its member id');
    return partitionOf(messageId.slice(0, end), this.partitions);
  }
}
