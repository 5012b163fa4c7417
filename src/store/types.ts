import type { LedgerEntry, MemberState } from '../domain/state.js';
import type { DayCounters } from '../reports/kpis.js';

/**
 * The store seam. Actors and the engine see these interfaces; src/store/lmdb.ts
 * implements them over LMDB and src/store/memory.ts in memory for unit tests.
 */

export type OutboxKey = [bootId: number, actor: number, batch: number];

/** Everything one actor batch changes, committed in one transaction. */
export interface BatchWrite {
  /**
   * `created`: the member is new (it joins the member index the sweep walks).
   * `base`: the member's state as the store holds it now (as last written or
   * read), so only what changed is written; undefined when nothing is stored.
   * `dueMs`: when the sweep next has work for the member (domain `nextDueMs`
   * under the current program), null for never: the store keeps the due
   * index by it, so the sweep reads only members with something due.
   */
  readonly members: readonly {
    readonly partition: number;
    readonly state: MemberState;
    readonly created?: boolean;
    readonly base?: MemberState;
    readonly dueMs: number | null;
  }[];
  /** The ledger entries of one applied event, stored together under their first sequence number. */
  readonly ledger: readonly { readonly partition: number; readonly entries: readonly LedgerEntry[] }[];
  /** The first outcome of each applied event, keyed by (member, event id): the idempotency record. */
  readonly processed: readonly { readonly partition: number; readonly memberId: string; readonly eventId: string; readonly outcomes: Uint8Array }[];
  /** Global promotion budget this batch used, added to the actor's running totals. */
  readonly budgets?: { readonly actor: number; readonly usage: readonly (readonly [promotionId: string, points: number, uses: number])[] };
  /** KPI counters this batch adds, by day / ISO week / month key: single-instance mode's, kept per actor. */
  readonly kpis?: KpiWrite;
  /**
   * Cluster mode's KPI counters instead of `kpis` (the actor's store records
   * changes): one entry per partition the batch counted something for, added
   * to that partition's running totals in tree `partitionKpis` through the
   * partition's changes, so they are in its changelog record and snapshots
   * and move with it. Per partition, not per actor: counters per actor would
   * stay on the instance that counted them, and a new owner would start
   * the partition's counts from nothing. `actor` is the writer's (its only writer).
   */
  readonly partitionKpis?: readonly (KpiWrite & { readonly partition: number })[];
  /**
   * Partitions whose due index now agrees with the program of this digest
   * (every member re-indexed under it): a sweep that walked the whole partition.
   */
  readonly dueIndexMarks?: readonly { readonly partition: number; readonly programDigest: number }[];
  /**
   * The highest input stream sequence of each partition whose events this
   * batch commits (applied, rejected or duplicate; not dead letters): where
   * the partition's consumer resumes when another instance takes it over.
   * Only a change recorder reads it (cluster mode's changelog records).
   */
  readonly watermarks?: readonly { readonly partition: number; readonly sequence: number }[];
  /** Outcomes to publish after the commit; removed once published. */
  readonly outbox?: { readonly key: OutboxKey; readonly messages: Uint8Array };
  /** Outbox entries the outcome stream has acknowledged since the last commit: removed in this one. */
  readonly outboxRemovals?: readonly OutboxKey[];
}

/**
 * The records a member's wallet is read from (the core and its voucher
 * records), undecoded: what a reader may cache a rendered wallet against.
 * A returned array may be a view that the next read overwrites: compare or
 * copy it at once.
 */
export interface WalletRecords {
  partitionOf(memberId: string): number;
  core(partition: number, memberId: string): Uint8Array | undefined;
  /** One voucher record, by code. */
  voucher(partition: number, memberId: string, code: string): Uint8Array | undefined;
}

/** One entry of the due index. */
export interface DueKey {
  readonly dueMs: number;
  readonly memberId: string;
}

export interface KpiWrite {
  readonly actor: number;
  readonly days: readonly (readonly [dayKey: number, counters: DayCounters])[];
  readonly weeks: readonly (readonly [weekKey: number, activeMembers: number])[];
  readonly months: readonly (readonly [monthKey: number, activeMembers: number])[];
}

export interface ActorStore {
  /** True while a change recorder is set (cluster mode): only then does a batch need its watermarks (BatchWrite.watermarks). */
  readonly recordingChanges?: boolean;
  readMember(partition: number, memberId: string): MemberState | undefined;
  /** Members of a partition after a member id (exclusive), in key order: the sweep's cursor. */
  scanMembers(partition: number, afterMemberId: string | undefined, limit: number): MemberState[];
  /**
   * Members of a partition whose indexed due time is at or before `nowMs`, in
   * (due time, member id) order after `after` (exclusive): the sweep's work list.
   */
  dueMembers(partition: number, nowMs: number, after: DueKey | undefined, limit: number): DueKey[];
  /**
   * The due time the store has indexed for this state object (as read or
   * written through this store); undefined when it does not know it.
   */
  indexedDueMs(state: MemberState): number | null | undefined;
  /** The program digest the partition's due index was last fully built under (undefined: never). */
  dueIndexDigest(partition: number): number | undefined;
  readProcessed(partition: number, memberId: string, eventId: string): Uint8Array | undefined;
  /** Resolves once the write is committed (visible); commits are applied in call order. */
  commit(write: BatchWrite): Promise<void>;
  /** Resolves once every commit so far is flushed to disk (durable). */
  durable(): Promise<void>;
  removeOutbox(key: OutboxKey): Promise<void>;
  close(): Promise<void>;
}

export interface StoreMeta {
  readonly formatVersion: number;
  readonly partitions: number;
  readonly createdAtMs: number;
}
