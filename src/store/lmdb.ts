import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import type { LedgerPage, LedgerQuery, MemberReads } from '../api/context.js';
import { assert } from '../domain/assert.js';
import type { LedgerEntry, MemberState } from '../domain/state.js';
import { EngineError } from '../config/errors.js';
import { emptyDay, mergeDay, type DayCounters } from '../reports/kpis.js';
import type { ReportSource } from '../reports/report.js';
import { partitionOf } from '../routing/partitioner.js';
import type { ActorStore, BatchWrite, KpiWrite, OutboxKey, StoreMeta } from './types.js';

/**
 * LMDB layout (one environment in <dataDir>/state, opened by every actor
 * thread and the main thread; LMDB serialises the writers):
 *   meta       'meta' → StoreMeta; 'program' → the program activated through the API
 *   members    [partition, memberId] → MemberState
 *   ledger     [partition, memberId, firstSeq] → LedgerEntry[] (one applied event's entries)
 *   processed  [memberId, eventId] → encoded first outcome (binary)
 *   outbox     [bootId, actor, batch] → encoded outcome messages (binary)
 *   kpis       ['d', dayKey, actor] → DayCounters; ['w'|'m', weekKey|monthKey, actor] → active members
 *   budgets    [promotionId, actor] → { points, uses } of global promotion budgets
 * Keys start with the partition where a partition may one day move to another
 * instance, so a partition's members and ledger are one key range. An event's
 * ledger entries share one record: one write per event instead of one per entry.
 */
export const STORE_FORMAT_VERSION = 2;

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
  private readonly members: Database<MemberState, [number, string]>;
  private readonly ledgerDb: Database<LedgerEntry[], [number, string, number]>;
  private readonly processed: Database<Uint8Array, [string, string]>;
  private readonly outbox: Database<Uint8Array, OutboxKey>;
  private readonly kpis: Database<DayCounters | number, [string, number, number]>;
  private readonly budgets: Database<{ points: number; uses: number }, [string, number]>;
  private partitions: number | undefined;

  constructor(options: LmdbStoreOptions) {
    const path = join(options.dataDir, 'state');
    try {
      mkdirSync(path, { recursive: true });
      this.root = open({ path, maxDbs: 16, mapSize: options.mapSizeBytes, compression: false });
    } catch (error) {
      throw new EngineError('ERR_STORE_OPEN', `cannot open the LMDB store at ${path}: ${(error as Error).message}`, { cause: error });
    }
    this.partitions = options.partitions;
    this.meta = this.root.openDB({ name: 'meta', encoding: 'msgpack' });
    this.members = this.root.openDB({ name: 'members', encoding: 'msgpack' });
    this.ledgerDb = this.root.openDB({ name: 'ledger', encoding: 'msgpack' });
    this.processed = this.root.openDB({ name: 'processed', encoding: 'binary' });
    this.outbox = this.root.openDB({ name: 'outbox', encoding: 'binary' });
    this.kpis = this.root.openDB({ name: 'kpis', encoding: 'msgpack' });
    this.budgets = this.root.openDB({ name: 'budgets', encoding: 'msgpack' });
  }

  /** Creates the meta record on first use; refuses a data directory made with another partition count. */
  async ensureMeta(partitions: number, nowMs: number): Promise<StoreMeta> {
    const existing = this.meta.get('meta') as StoreMeta | undefined;
    if (existing !== undefined) {
      if (existing.formatVersion !== STORE_FORMAT_VERSION) {
        throw new EngineError('ERR_STORE_FORMAT', `data directory has store format ${existing.formatVersion}, this engine reads ${STORE_FORMAT_VERSION}`);
      }
      if (existing.partitions !== partitions) {
        throw new EngineError(
          'ERR_PARTITIONS_MISMATCH',
          `data directory was created with ${existing.partitions} partitions; LOYALTY_PARTITIONS=${partitions} would move members between partitions. Use ${existing.partitions}.`,
        );
      }
      this.partitions = partitions;
      return existing;
    }
    const meta: StoreMeta = { formatVersion: STORE_FORMAT_VERSION, partitions, createdAtMs: nowMs };
    await this.meta.put('meta', meta);
    await this.root.flushed;
    this.partitions = partitions;
    return meta;
  }

  readMember(partition: number, memberId: string): MemberState | undefined {
    const state = this.members.get([partition, memberId]);
    assert(state === undefined || state.memberId === memberId, 'stored member state has another member id');
    return state;
  }

  scanMembers(partition: number, afterMemberId: string | undefined, limit: number): MemberState[] {
    const members: MemberState[] = [];
    const start: [number, string] | [number] = afterMemberId === undefined ? [partition] : [partition, afterMemberId];
    for (const { key, value } of this.members.getRange({ start, end: [partition + 1], limit: limit + 1 })) {
      if (afterMemberId !== undefined && key[1] === afterMemberId) continue;
      members.push(value);
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

  readProcessed(memberId: string, eventId: string): Uint8Array | undefined {
    return this.processed.get([memberId, eventId]);
  }

  async commit(write: BatchWrite): Promise<void> {
    await this.root.transaction(() => {
      for (const { partition, state } of write.members) this.members.put([partition, state.memberId], state);
      for (const { partition, entries } of write.ledger) {
        const first = entries[0];
        assert(first !== undefined, 'a ledger record holds at least one entry');
        this.ledgerDb.put([partition, first.memberId, first.seq], entries as LedgerEntry[]);
      }
      for (const { memberId, eventId, outcomes } of write.processed) this.processed.put([memberId, eventId], outcomes);
      if (write.kpis !== undefined) this.addKpis(write.kpis);
      for (const [promotionId, points, uses] of write.budgets?.usage ?? []) {
        const key: [string, number] = [promotionId, write.budgets!.actor];
        const total = this.budgets.get(key) ?? { points: 0, uses: 0 };
        this.budgets.put(key, { points: total.points + points, uses: total.uses + uses });
      }
      if (write.outbox !== undefined) this.outbox.put(write.outbox.key, write.outbox.messages);
    });
  }

  /** Read-modify-write inside the write transaction: each actor owns its own KPI keys. */
  private addKpis(kpis: KpiWrite): void {
    for (const [dayKey, counters] of kpis.days) {
      const key: [string, number, number] = ['d', dayKey, kpis.actor];
      const current = (this.kpis.get(key) as DayCounters | undefined) ?? emptyDay();
      this.kpis.put(key, mergeDay(current, counters));
    }
    for (const [kind, entries] of [['w', kpis.weeks], ['m', kpis.months]] as const) {
      for (const [periodKey, active] of entries) {
        const key: [string, number, number] = [kind, periodKey, kpis.actor];
        this.kpis.put(key, ((this.kpis.get(key) as number | undefined) ?? 0) + active);
      }
    }
  }

  /** With overlappingSync the fsync finishes after the commit; we ack only after it. */
  async durable(): Promise<void> {
    await this.root.flushed;
  }

  async removeOutbox(key: OutboxKey): Promise<void> {
    await this.outbox.remove(key);
  }

  /** Unpublished outcome batches, oldest first (for re-publishing after a restart). */
  *outboxEntries(): Generator<{ key: OutboxKey; messages: Uint8Array }> {
    for (const { key, value } of this.outbox.getRange({})) yield { key: key as OutboxKey, messages: value };
  }

  /** A member's ledger entries in sequence order. */
  *ledgerOf(partition: number, memberId: string, afterSeq = 0): Generator<LedgerEntry> {
    for (const { value } of this.ledgerDb.getRange({ start: [partition, memberId, 0], end: [partition, memberId, Number.MAX_SAFE_INTEGER] })) {
      for (const entry of value) if (entry.seq > afterSeq) yield entry;
    }
  }

  /** All members of one partition, in key order. */
  *membersOf(partition: number): Generator<MemberState> {
    for (const { value } of this.members.getRange({ start: [partition], end: [partition + 1] })) yield value;
  }

  // MemberReads, for the API: the partition comes from the member id.
  member(memberId: string): MemberState | undefined {
    return this.readMember(this.partitionOf(memberId), memberId);
  }

  ledger(memberId: string, query: LedgerQuery): LedgerPage {
    assert(query.limit > 0, 'ledger page limit must be positive');
    const partition = this.partitionOf(memberId);
    const entries: LedgerEntry[] = [];
    let lastSeq: number | undefined;
    let more = false;
    // Records hold one event's entries; start from the record holding afterSeq + 1.
    let startSeq = 0;
    for (const { key } of this.ledgerDb.getRange({ start: [partition, memberId, query.afterSeq + 1], end: [partition, memberId, -1], reverse: true, limit: 1 })) {
      startSeq = key[2];
    }
    for (const { value } of this.ledgerDb.getRange({ start: [partition, memberId, startSeq], end: [partition, memberId, Number.MAX_SAFE_INTEGER] })) {
      for (const entry of value) {
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

  /** Every KPI counter, merged across actors. Small: one record per day, week and month per actor. */
  reportSource(): ReportSource {
    const days = new Map<number, DayCounters>();
    const weeks = new Map<number, number>();
    const months = new Map<number, number>();
    for (const { key, value } of this.kpis.getRange({})) {
      const [kind, periodKey] = key as [string, number, number];
      if (kind === 'd') days.set(periodKey, mergeDay(days.get(periodKey) ?? emptyDay(), value as DayCounters));
      else if (kind === 'w') weeks.set(periodKey, (weeks.get(periodKey) ?? 0) + (value as number));
      else if (kind === 'm') months.set(periodKey, (months.get(periodKey) ?? 0) + (value as number));
    }
    return { days, weeks, months };
  }

  storedProgram(): StoredProgram | undefined {
    return this.meta.get('program') as StoredProgram | undefined;
  }

  async storeProgram(program: StoredProgram): Promise<void> {
    await this.meta.put('program', program);
    await this.root.flushed;
  }

  async close(): Promise<void> {
    await this.root.close();
  }

  private partitionOf(memberId: string): number {
    assert(this.partitions !== undefined, 'the store needs the partition count for reads by member id');
    return partitionOf(memberId, this.partitions);
  }
}
