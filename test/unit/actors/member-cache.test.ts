import { describe, expect, it } from 'vitest';
import { MemberCache } from '../../../src/actors/member-cache.js';
import { AssertionError } from '../../../src/domain/assert.js';
import type { MemberState } from '../../../src/domain/state.js';

// The cache never looks inside a state: a minimal stand-in keeps these tests
// independent of the domain's member shape.
const state = (memberId: string, version = 0) => ({ memberId, version }) as unknown as MemberState;

function cached(cache: MemberCache, ids: readonly string[]): string[] {
  // get() refreshes recency, so probe a copy of the question: which ids are held?
  return ids.filter((id) => (cache as unknown as { states: Map<string, MemberState> }).states.has(id));
}

describe('MemberCache', () => {
  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new MemberCache(0)).toThrow(AssertionError);
    expect(() => new MemberCache(1.5)).toThrow(AssertionError);
  });

  it('evicts least recently used committed members down to capacity', () => {
    const cache = new MemberCache(2);
    for (const id of ['a', 'b', 'c', 'd']) cache.load(id, state(id));
    expect(cache.size).toBe(4);
    expect(cache.evict()).toBe(2);
    expect(cache.size).toBe(2);
    expect(cached(cache, ['a', 'b', 'c', 'd'])).toEqual(['c', 'd']);
    expect(cache.get('a')).toBeUndefined();
  });

  it('does nothing at or under capacity', () => {
    const cache = new MemberCache(2);
    cache.load('a', state('a'));
    cache.load('b', state('b'));
    expect(cache.evict()).toBe(0);
    expect(cache.size).toBe(2);
  });

  it('get() marks a member most recently used', () => {
    const cache = new MemberCache(2);
    cache.load('a', state('a'));
    cache.load('b', state('b'));
    expect(cache.get('a')).toEqual(state('a'));
    cache.load('c', state('c'));
    cache.evict();
    expect(cached(cache, ['a', 'b', 'c'])).toEqual(['a', 'c']);
  });

  it('set() replaces the state and marks it most recently used', () => {
    const cache = new MemberCache(2);
    cache.load('a', state('a'));
    cache.load('b', state('b'));
    cache.set('a', state('a', 1), 1);
    cache.committed(['a'], 1);
    cache.load('c', state('c'));
    cache.evict();
    expect(cached(cache, ['a', 'b', 'c'])).toEqual(['a', 'c']);
    expect(cache.get('a')).toEqual(state('a', 1));
  });

  it('never evicts a member whose latest state is uncommitted, even above capacity', () => {
    const cache = new MemberCache(1);
    cache.set('a', state('a'), 1);
    cache.set('b', state('b'), 1);
    cache.set('c', state('c'), 2);
    expect(cache.evict()).toBe(0);
    expect(cache.size).toBe(3);
    cache.committed(['a', 'b'], 1);
    // a and b are older than c and now committed: they go, c stays.
    expect(cache.evict()).toBe(2);
    expect(cached(cache, ['a', 'b', 'c'])).toEqual(['c']);
  });

  it('skips uncommitted members and evicts newer committed ones instead', () => {
    const cache = new MemberCache(1);
    cache.set('old-dirty', state('old-dirty'), 5);
    cache.load('clean-1', state('clean-1'));
    cache.load('clean-2', state('clean-2'));
    expect(cache.evict()).toBe(2);
    expect(cached(cache, ['old-dirty', 'clean-1', 'clean-2'])).toEqual(['old-dirty']);
  });

  it('committed() releases a member only for the batch that last changed it', () => {
    const cache = new MemberCache(1);
    cache.set('a', state('a', 1), 1);
    cache.set('a', state('a', 2), 2); // batch 2 changed it again before batch 1 committed
    cache.load('b', state('b'));
    cache.committed(['a'], 1);
    cache.evict();
    // a's state from batch 2 is not in the store yet: it must stay.
    expect(cached(cache, ['a', 'b'])).toEqual(['a']);
    cache.committed(['a'], 2);
    // Now a may go, once its second chance (it was changed recently) is used up.
    cache.load('c', state('c'));
    expect(cache.evict()).toBe(1);
    expect(cached(cache, ['a', 'c'])).toEqual(['a']);
    cache.load('d', state('d'));
    expect(cache.evict()).toBe(1);
    expect(cached(cache, ['a', 'd'])).toEqual(['d']);
  });

  it('a member used again keeps its place over members not used since (second chance)', () => {
    const cache = new MemberCache(3);
    for (const id of ['a', 'b', 'c']) cache.load(id, state(id));
    cache.get('a');
    cache.load('d', state('d'));
    cache.load('e', state('e'));
    expect(cache.evict()).toBe(2);
    expect(cached(cache, ['a', 'b', 'c', 'd', 'e'])).toEqual(['a', 'd', 'e']);
  });

  it('committed() for members it does not hold is harmless', () => {
    const cache = new MemberCache(1);
    cache.committed(['ghost'], 1);
    expect(cache.size).toBe(0);
  });
});
