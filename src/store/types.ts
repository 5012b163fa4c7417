import type { LedgerEntry, MemberState } from '../domain/state.js';

/**
 * The store seam. Actors and the engine see these interfaces; src/store/lmdb.ts
 * implements them over LMDB and src/store/memory.ts in memory for unit tests.
 */

export type OutboxKey = [bootId: number, actor: number, batch: number];

/** Everything one actor batch changes, committed in one transaction. */
export interface BatchWrite {
  readonly members: readonly { readonly partition: number; readonly state: MemberState }[];
  readonly ledger: readonly { readonly partition: number; readonly entry: LedgerEntry }[];
  /** The first outcome of each applied event, keyed by (member, event id): the idempotency record. */
  readonly processed: readonly { readonly memberId: string; readonly eventId: string; readonly outcomes: Uint8Array }[];
  /** Outcomes to publish after the commit; removed once published. */
  readonly outbox?: { readonly key: OutboxKey; readonly messages: Uint8Array };
}

export interface ActorStore {
  readMember(partition: number, memberId: string): MemberState | undefined;
  readProcessed(memberId: string, eventId: string): Uint8Array | undefined;
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
