import type { LedgerEntry, MemberState } from '../domain/state.js';
import type { ActorStore, BatchWrite, OutboxKey } from './types.js';

/** In-memory ActorStore for unit tests: same contract, commits atomically, can be told to fail. */
export class MemoryStore implements ActorStore {
  readonly members = new Map<string, MemberState>();
  readonly ledger = new Map<string, LedgerEntry[]>();
  readonly processed = new Map<string, Uint8Array>();
  readonly outbox = new Map<string, Uint8Array>();
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
    for (const { partition, state } of write.members) this.members.set(`${partition}/${state.memberId}`, state);
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
    this.commits += 1;
  }

  async durable(): Promise<void> {}

  async removeOutbox(key: OutboxKey): Promise<void> {
    this.outbox.delete(key.join('/'));
  }

  async close(): Promise<void> {}
}
