import { describe, expect, it } from 'vitest';
import { applyEvent, createMemoryBudgets, globalBudgetLimits, validateEvent, type MemberState } from '../../../src/domain/index.js';
import { item, makeProgram, Member, purchase } from './helpers.js';

/** Issue item 8: time-windowed, targeted promotions with per-member and global budgets. */

const cyberWeek = (budget: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  id: 'cyber-week',
  name: 'Cyber Week double points',
  startsAt: '2026-11-23T00:00:00+01:00',
  endsAt: '2026-12-01T00:00:00+01:00',
  award: { kind: 'multiplier', percent: 200 },
  budget,
  ...extra,
});

function promotionPoints(member: Member, eventId: string, promotionId: string): number {
  return member.ledger
    .filter((entry) => entry.eventId === eventId && entry.balance === 'spendable' && entry.promotionId === promotionId)
    .reduce((sum, entry) => sum + entry.points, 0);
}

describe('time window', () => {
  it('doubles points from the first to the last minute of Cyber Week, not outside it', () => {
    const member = new Member(makeProgram({ promotions: [cyberWeek()] }));
    member.ok(purchase('before', '2026-11-22T22:59:59Z', 1000));
    member.ok(purchase('first', '2026-11-22T23:00:00Z', 1000));
    member.ok(purchase('last', '2026-11-30T22:59:59Z', 1000));
    member.ok(purchase('after', '2026-11-30T23:00:00Z', 1000));
    expect(['before', 'first', 'last', 'after'].map((id) => promotionPoints(member, id, 'cyber-week'))).toEqual([0, 10, 10, 0]);
    expect(member.ledger.find((entry) => entry.promotionId === 'cyber-week')!.ruleId).toBe('cyber-week');
  });
});

describe('targeting', () => {
  it('by tier', () => {
    const program = makeProgram({
      tiers: [
        { id: 'member', name: 'Member', qualifyingPointsMin: 0 },
        { id: 'gold', name: 'Gold', qualifyingPointsMin: 100 },
      ],
      promotions: [cyberWeek({}, { eligibility: { tiers: ['gold'] } })],
    });
    const member = new Member(program);
    member.ok(purchase('p1', '2026-11-24T10:00:00Z', 5000));
    expect(promotionPoints(member, 'p1', 'cyber-week')).toBe(0);
    member.ok(purchase('p2', '2026-11-24T11:00:00Z', 10000));
    expect(member.tier).toBe('gold');
    member.ok(purchase('p3', '2026-11-24T12:00:00Z', 5000));
    expect(promotionPoints(member, 'p3', 'cyber-week')).toBe(50);
  });

  it('by segment list and member attributes', () => {
    const program = makeProgram({ promotions: [cyberWeek({}, { eligibility: { segments: ['vip'], attributes: { country: 'DE' } } })] });
    const vip = new Member(program, 'vip');
    vip.ok({ id: 'e', type: 'enroll', occurredAt: '2026-11-01T00:00:00Z', segments: ['vip', 'newsletter'], attributes: { country: 'DE' } });
    vip.ok(purchase('p', '2026-11-24T10:00:00Z', 1000));
    const french = new Member(program, 'fr');
    french.ok({ id: 'e', type: 'enroll', occurredAt: '2026-11-01T00:00:00Z', segments: ['vip'], attributes: { country: 'FR' } });
    french.ok(purchase('p', '2026-11-24T10:00:00Z', 1000));
    expect(promotionPoints(vip, 'p', 'cyber-week')).toBe(10);
    expect(promotionPoints(french, 'p', 'cyber-week')).toBe(0);
  });

  it('by SKU/category and partner combination: only the matching lines at that partner', () => {
    const program = makeProgram({
      promotions: [cyberWeek({}, { when: { categories: ['electronics'], partners: ['tech-store'] }, award: { kind: 'multiplier', percent: 300 } })],
    });
    const member = new Member(program);
    const items = [item('TV', 1, 50000, 'electronics'), item('CABLE', 2, 1000, 'accessories')];
    member.ok(purchase('elsewhere', '2026-11-24T10:00:00Z', 52000, { items, partner: 'other' }));
    member.ok(purchase('there', '2026-11-24T11:00:00Z', 52000, { items, partner: 'tech-store' }));
    expect(promotionPoints(member, 'elsewhere', 'cyber-week')).toBe(0);
    expect(promotionPoints(member, 'there', 'cyber-week')).toBe(1000); // 500 base on the TV, ×3
  });
});

describe('budgets', () => {
  it('per member, in points: the promotion stops at the cap, partially granting the last order', () => {
    const member = new Member(makeProgram({ promotions: [cyberWeek({ perMember: { points: 150 } })] }));
    member.ok(purchase('p1', '2026-11-24T10:00:00Z', 10000));
    member.ok(purchase('p2', '2026-11-24T11:00:00Z', 10000));
    member.ok(purchase('p3', '2026-11-24T12:00:00Z', 10000));
    expect(['p1', 'p2', 'p3'].map((id) => promotionPoints(member, id, 'cyber-week'))).toEqual([100, 50, 0]);
  });

  it('per member, in uses', () => {
    const member = new Member(makeProgram({ promotions: [cyberWeek({ perMember: { uses: 1 } })] }));
    member.ok(purchase('p1', '2026-11-24T10:00:00Z', 1000));
    member.ok(purchase('p2', '2026-11-24T11:00:00Z', 1000));
    expect(promotionPoints(member, 'p2', 'cyber-week')).toBe(0);
  });

  it('global, in points and uses, shared by every member exactly, and reported for the engine to persist', () => {
    const program = makeProgram({ promotions: [cyberWeek({ global: { points: 250, uses: 4 } })] });
    const budgets = createMemoryBudgets(globalBudgetLimits(program));
    const members = ['a', 'b', 'c', 'd', 'e'].map((id) => new Member(program, id, budgets));
    const decisions = members.map((member) => member.ok(purchase('p', '2026-11-24T10:00:00Z', 10000)));
    expect(members.map((member) => promotionPoints(member, 'p', 'cyber-week'))).toEqual([100, 100, 50, 0, 0]);
    expect(decisions.map((decision) => decision.budgetUsage)).toEqual([
      [{ promotionId: 'cyber-week', points: 100, uses: 1 }],
      [{ promotionId: 'cyber-week', points: 100, uses: 1 }],
      [{ promotionId: 'cyber-week', points: 50, uses: 1 }],
      undefined,
      undefined,
    ]);
    expect(budgets.usage('cyber-week')).toEqual({ points: 250, uses: 3 });
  });

  it('a rejected event takes no budget', () => {
    const program = makeProgram({ promotions: [cyberWeek({ global: { uses: 1 } })] });
    const budgets = createMemoryBudgets(globalBudgetLimits(program));
    const validation = validateEvent({ id: 'x', memberId: 'm', type: 'purchase', occurredAt: '2026-11-24T10:00:00Z', amountMinor: 100, currency: 'USD' });
    if (!validation.ok) throw new Error(validation.reason);
    const decision = applyEvent(undefined, validation.event, validation.occurredAtMs, program, { budgets });
    expect(decision.outcomes[0]!.kind).toBe('rejected');
    expect(decision.state).toBeUndefined();
    expect(budgets.usage('cyber-week')).toEqual({ points: 0, uses: 0 });
  });

  it('per-member usage is dropped from state once the promotion has ended', () => {
    const member = new Member(makeProgram({ promotions: [cyberWeek({ perMember: { uses: 3 } })] }));
    member.ok(purchase('p1', '2026-11-24T10:00:00Z', 1000));
    expect(Object.keys(member.state!.promotionUsage)).toEqual(['cyber-week']);
    member.sweep('2026-12-02T00:00:00Z');
    expect((member.state as MemberState).promotionUsage).toEqual({});
  });
});
