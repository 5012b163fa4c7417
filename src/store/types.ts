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
   */
  readonly members: readonly { readonly partition: number; readonly state: MemberState; readonly created?: boolean; readonly base?: MemberState }[];
  /** The ledger entries of one applied event, stored together under their first sequence number. */
  readonly ledger: readonly { readonly partition: number; readonly entries: readonly LedgerEntry[] }[];
  /** The first outcome of each applied event, keyed by (member, event id): the idempotency record. */
  readonly processed: readonly { readonly partition: number; readonly memberId: string; readonly eventId: string; readonly outcomes: Uint8Array }[];
  /** Global promotion budget this batch used, added to the actor's running totals. */
  readonly budgets?: { readonly actor: number; readonly usage: readonly (readonly [promotionId: string, points: number, uses: number])[] };
  /** KPI counters this batch adds, by day / ISO week / month key. */
  readonly kpis?: KpiWrite;
  /** Outcomes to publish after the commit; removed once published. */
  readonly outbox?: { readonly key: OutboxKey; readonly messages: Uint8Array };
}

export interface KpiWrite {
  readonly actor: number;
  readonly days: readonly (readonly [dayKey: number, counters: DayCounters])[];
  readonly weeks: readonly (readonly [weekKey: number, activeMembers: number])[];
  readonly months: readonly (readonly [monthKey: number, activeMembers: number])[];
}

export interface ActorStore {
  readMember(partition: number, memberId: string): MemberState | undefined;
  /** Members of a partition after a member id (exclusive), in key order: the sweep's cursor. */
  scanMembers(partition: number, afterMemberId: string | undefined, limit: number): MemberState[];
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
