import { assert } from '../domain/assert.js';
import type { MemberState } from '../domain/state.js';

/**
 * The actor's in-memory member states: the truth between commits (an LMDB read
 * right after a write may still see the old value). Bounded: least recently
 * used members are evicted, but never one whose latest state is not yet
 * committed, since re-reading it from LMDB would lose that state.
 *
 * Recency is kept the CLOCK way (second chance): a hit only marks its entry
 * used, and eviction moves used entries to the young end instead of dropping
 * them. Why: re-inserting into the Map on every hit (exact LRU) cost a few
 * per cent of the actor's time at tens of thousands of members.
 */
interface Entry {
  state: MemberState;
  used: boolean;
}

export class MemberCache {
  private readonly states = new Map<string, Entry>();
  /** memberId → number of the last batch that changed it, until that batch commits. */
  private readonly uncommitted = new Map<string, number>();

  constructor(private readonly capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, 'member cache capacity must be a positive integer');
  }

  get size(): number {
    return this.states.size;
  }

  get(memberId: string): MemberState | undefined {
    const entry = this.states.get(memberId);
    if (entry === undefined) return undefined;
    entry.used = true;
    return entry.state;
  }

  set(memberId: string, state: MemberState, batch: number): void {
    const entry = this.states.get(memberId);
    if (entry === undefined) this.states.set(memberId, { state, used: true });
    else {
      entry.state = state;
      entry.used = true;
    }
    this.uncommitted.set(memberId, batch);
  }

  /** Caches a state read from the store (already committed). */
  load(memberId: string, state: MemberState): void {
    const entry = this.states.get(memberId);
    if (entry === undefined) this.states.set(memberId, { state, used: false });
    else entry.state = state;
  }

  committed(memberIds: Iterable<string>, batch: number): void {
    for (const memberId of memberIds) {
      if (this.uncommitted.get(memberId) === batch) this.uncommitted.delete(memberId);
    }
  }

  /**
   * Forgets every member `matches` picks (a partition handed over or
   * restored: its stored states are the truth from now on). None of them may
   * have a change not yet committed. Returns how many went.
   */
  forget(matches: (memberId: string) => boolean): number {
    let forgotten = 0;
    for (const memberId of this.states.keys()) {
      if (!matches(memberId)) continue;
      assert(!this.uncommitted.has(memberId), 'a member with an uncommitted change cannot be forgotten');
      this.states.delete(memberId);
      forgotten += 1;
    }
    return forgotten;
  }

  /** Evicts least recently used committed members down to capacity. */
  evict(): number {
    let evicted = 0;
    if (this.states.size <= this.capacity) return 0;
    // Each entry is visited at most twice: once to take its second chance, once more to go.
    let visitsLeft = 2 * this.states.size;
    for (const [memberId, entry] of this.states) {
      if (this.states.size <= this.capacity || visitsLeft-- <= 0) break;
      if (this.uncommitted.has(memberId)) continue;
      if (entry.used) {
        // Second chance: to the young end (iteration visits it again, later).
        entry.used = false;
        this.states.delete(memberId);
        this.states.set(memberId, entry);
        continue;
      }
      this.states.delete(memberId);
      evicted += 1;
    }
    return evicted;
  }
}
