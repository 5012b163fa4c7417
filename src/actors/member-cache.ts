import { assert } from '../domain/assert.js';
import type { MemberState } from '../domain/state.js';

/**
 * The actor's in-memory member states: the truth between commits (an LMDB read
 * right after a write may still see the old value). Bounded: least recently
 * used members are evicted, but never one whose latest state is not yet
 * committed, since re-reading it from LMDB would lose that state.
 */
export class MemberCache {
  private readonly states = new Map<string, MemberState>();
  /** memberId → number of the last batch that changed it, until that batch commits. */
  private readonly uncommitted = new Map<string, number>();

  constructor(private readonly capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, 'member cache capacity must be a positive integer');
  }

  get size(): number {
    return this.states.size;
  }

  get(memberId: string): MemberState | undefined {
    const state = this.states.get(memberId);
    if (state !== undefined) {
      // Map keeps insertion order: re-inserting marks it most recently used.
      this.states.delete(memberId);
      this.states.set(memberId, state);
    }
    return state;
  }

  set(memberId: string, state: MemberState, batch: number): void {
    this.states.delete(memberId);
    this.states.set(memberId, state);
    this.uncommitted.set(memberId, batch);
  }

  /** Caches a state read from the store (already committed). */
  load(memberId: string, state: MemberState): void {
    this.states.set(memberId, state);
  }

  committed(memberIds: Iterable<string>, batch: number): void {
    for (const memberId of memberIds) {
      if (this.uncommitted.get(memberId) === batch) this.uncommitted.delete(memberId);
    }
  }

  /** Evicts least recently used committed members down to capacity. */
  evict(): number {
    let evicted = 0;
    if (this.states.size <= this.capacity) return 0;
    for (const memberId of this.states.keys()) {
      if (this.states.size <= this.capacity) break;
      if (this.uncommitted.has(memberId)) continue;
      this.states.delete(memberId);
      evicted += 1;
    }
    return evicted;
  }
}
