import type { LedgerEntry, MemberState } from '../domain/state.js';
import type { ActorStore, BatchWrite, DueKey, OutboxKey } from './types.js';

/** In-memory ActorStore for unit tests: same contract, commits atomically, can be told to fail. */
export class MemoryStore implements ActorStore {
  readonly members = new Map<string, MemberState>();
  readonly ledger = new Map<string, LedgerEntry[]>();
  readonly processed = new Map<string, Uint8Array>();
  readonly outbox = new Map<string, Uint8Array>();
  /** `partition/memberId` → the member's indexed due time. */
  readonly due = new Map<string, { partition: number; memberId: string; dueMs: number }>();
  readonly dueDigests = new Map<number, number>();
  private readonly indexedDue = new WeakMap<MemberState, number | null>();
  commits = 0;
  failNextCommit: Error | undefined;

  readMember(partition: number, memberId: string): MemberState | undefined {
    return this.members.get(`${partition}/${memberId}`);
  }

  scanMembers(partition: number, afterMemberId: string | undefined, limit: number): MemberState[] {
    const prefix = `${partition}/`;
    return [...this.members.entries()]
      .filter(([key]) => key.startsWith(prefix))
      .map(([, state]) => state)
      .filter((state) => afterMemberId === undefined || state.memberId > afterMemberId)
      .sort((a, b) => (a.memberId < b.memberId ? -1 : 1))
      .slice(0, limit);
  }

  dueMembers(partition: number, nowMs: number, after: DueKey | undefined, limit: number): DueKey[] {
    const isAfter = (key: DueKey) => after === undefined || key.dueMs > after.dueMs || (key.dueMs === after.dueMs && key.memberId > after.memberId);
    return [...this.due.values()]
      .filter((key) => key.partition === partition && key.dueMs <= nowMs && isAfter(key))
      .sort((a, b) => a.dueMs - b.dueMs || (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0))
      .slice(0, limit)
      .map(({ dueMs, memberId }) => ({ dueMs, memberId }));
  }

  indexedDueMs(state: MemberState): number | null | undefined {
    return this.indexedDue.get(state);
  }

  dueIndexDigest(partition: number): number | undefined {
    return this.dueDigests.get(partition);
  }

  readonly budgetTotals = new Map<string, { points: number; uses: number }>();

  // A member's partition follows from its id: the fake keys by member and event alone.
  readProcessed(_partition: number, memberId: string, eventId: string): Uint8Array | undefined {
    return this.processed.get(`${memberId}/${eventId}`);
  }

  async commit(write: BatchWrite): Promise<void> {
    await Promise.resolve();
    if (this.failNextCommit !== undefined) {
      const error = this.failNextCommit;
      this.failNextCommit = undefined;
      throw error;
    }
    for (const { partition, state, dueMs } of write.members) {
      const key = `${partition}/${state.memberId}`;
      this.members.set(key, state);
      if (dueMs === null) this.due.delete(key);
      else this.due.set(key, { partition, memberId: state.memberId, dueMs });
      this.indexedDue.set(state, dueMs);
    }
    for (const { partition, programDigest } of write.dueIndexMarks ?? []) this.dueDigests.set(partition, programDigest);
    for (const { entries } of write.ledger) {
      for (const entry of entries) {
        const existing = this.ledger.get(entry.memberId) ?? [];
        existing.push(entry);
        this.ledger.set(entry.memberId, existing);
      }
    }
    for (const [promotionId, points, uses] of write.budgets?.usage ?? []) {
      const total = this.budgetTotals.get(promotionId) ?? { points: 0, uses: 0 };
      this.budgetTotals.set(promotionId, { points: total.points + points, uses: total.uses + uses });
    }
    for (const { memberId, eventId, outcomes } of write.processed) this.processed.set(`${memberId}/${eventId}`, outcomes);
    if (write.outbox !== undefined) this.outbox.set(write.outbox.key.join('/'), write.outbox.messages);
    for (const key of write.outboxRemovals ?? []) this.outbox.delete(key.join('/'));
    this.commits += 1;
  }

  async durable(): Promise<void> {}

  async removeOutbox(key: OutboxKey): Promise<void> {
    this.outbox.delete(key.join('/'));
  }

  async close(): Promise<void> {}
}
