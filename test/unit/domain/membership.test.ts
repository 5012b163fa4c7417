import { describe, expect, it } from 'vitest';
import { adjust, makeProgram, Member, purchase } from './helpers.js';

/** Issue items 10 and 11: adjustments and membership. */

describe('adjustments', () => {
  it('record the reason and the operator on the ledger entry', () => {
    const member = new Member(makeProgram());
    member.ok(adjust('a1', '2026-03-01T10:00:00Z', 'credit', 300, { reason: 'late delivery', operator: 'ana@support' }));
    member.ok(adjust('a2', '2026-03-02T10:00:00Z', 'debit', 100, { reason: 'duplicate credit', operator: 'ben@support' }));
    expect(member.spendable).toBe(200);
    expect(member.qualifying).toBe(0);
    expect(member.ledger.map((entry) => [entry.kind, entry.points, entry.reason, entry.operator])).toEqual([
      ['adjustment', 300, 'late delivery', 'ana@support'],
      ['adjustment', -100, 'duplicate credit', 'ben@support'],
    ]);
  });

  it('a debit beyond the balance is refused with the balance in the reason', () => {
    const member = new Member(makeProgram());
    member.ok(adjust('a1', '2026-03-01T10:00:00Z', 'credit', 50));
    expect(member.rejected(adjust('a2', '2026-03-02T10:00:00Z', 'debit', 80), 'INSUFFICIENT_POINTS')).toContain('has 50 spendable');
    member.rejected(adjust('a3', '2026-03-02T10:00:00Z', 'credit', 80, { currency: 'miles' }), 'UNKNOWN_CURRENCY');
  });

  it('a qualifying credit can upgrade the tier (status correction)', () => {
    const member = new Member(makeProgram());
    member.ok(adjust('a1', '2026-03-01T10:00:00Z', 'credit', 600, { qualifying: true }));
    expect(member.tier).toBe('silver');
    member.ok(adjust('a2', '2026-03-02T10:00:00Z', 'debit', 600, { qualifying: true }));
    expect(member.qualifying).toBe(0);
  });
});

describe('membership', () => {
  it('the first event enrolls automatically (membership outcome)', () => {
    const member = new Member(makeProgram());
    const decision = member.ok(purchase('p1', '2026-03-01T10:00:00Z', 1000));
    expect(member.outcomesOf('membership', decision)).toMatchObject([{ action: 'enrolled' }]);
    expect(member.state).toMatchObject({ status: 'active', enrolledAtMs: Date.parse('2026-03-01T10:00:00Z'), eventCount: 1 });
  });

  it('with autoEnroll off, events of unknown members are refused and nothing is created', () => {
    const member = new Member(makeProgram({ membership: { autoEnroll: false } }));
    member.rejected(purchase('p1', '2026-03-01T10:00:00Z', 1000), 'UNKNOWN_MEMBER');
    expect(member.state).toBeUndefined();
    member.ok({ id: 'e1', type: 'enroll', occurredAt: '2026-03-01T11:00:00Z', attributes: { country: 'DE' }, segments: ['vip', 'vip'] });
    member.ok(purchase('p2', '2026-03-01T12:00:00Z', 1000));
    expect(member.state).toMatchObject({ attributes: { country: 'DE' }, segments: ['vip'] });
    expect(member.spendable).toBe(10);
  });

  it('enroll on an active member updates attributes (merged) and segments (replaced)', () => {
    const member = new Member(makeProgram());
    member.ok({ id: 'e1', type: 'enroll', occurredAt: '2026-03-01T11:00:00Z', attributes: { country: 'DE', city: 'Berlin' }, segments: ['a'] });
    const decision = member.ok({ id: 'e2', type: 'enroll', occurredAt: '2026-03-02T11:00:00Z', attributes: { city: 'Hamburg' }, segments: ['b'] });
    expect(member.outcomesOf('membership', decision)).toMatchObject([{ action: 'updated' }]);
    expect(member.state).toMatchObject({ attributes: { country: 'DE', city: 'Hamburg' }, segments: ['b'] });
  });

  it('unenroll with forfeit ledgers every point out and drops the tier; later events are refused until re-enrollment', () => {
    const member = new Member(makeProgram({ earn: { pendingDays: 14 } }));
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 60000));
    member.sweep('2026-03-20T00:00:00Z');
    member.ok(purchase('p2', '2026-03-21T10:00:00Z', 1000));
    expect(member.tier).toBe('silver');
    const decision = member.ok({ id: 'u1', type: 'unenroll', occurredAt: '2026-03-22T10:00:00Z' });
    expect(member.currency()).toMatchObject({ spendable: 0, pending: 0, qualifying: 0 });
    expect(member.tier).toBe('member');
    expect(member.outcomesOf('tier', decision)[0]!.reason).toContain('unenrolled');
    expect(member.ledger.filter((entry) => entry.kind === 'forfeit').map((entry) => [entry.balance, entry.points])).toEqual([
      ['spendable', -600],
      ['pending', -10],
      ['qualifying', -610],
    ]);
    member.rejected(purchase('p3', '2026-03-23T10:00:00Z', 1000), 'MEMBER_NOT_ACTIVE');
    const back = member.ok({ id: 'e1', type: 'enroll', occurredAt: '2026-03-24T10:00:00Z' });
    expect(member.outcomesOf('membership', back)).toMatchObject([{ action: 'reenrolled' }]);
    member.ok(purchase('p4', '2026-03-25T10:00:00Z', 1000));
    expect(member.pending).toBe(10);
  });

  it('unenroll with keep leaves the balances for a later re-enrollment', () => {
    const member = new Member(makeProgram({ membership: { unenrollPolicy: 'keep' } }));
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 60000));
    member.ok({ id: 'u1', type: 'unenroll', occurredAt: '2026-03-22T10:00:00Z' });
    expect(member.spendable).toBe(600);
    expect(member.state!.status).toBe('unenrolled');
  });

  it('erasure removes personal data, keeps balances and the ledger, and refuses every later event', () => {
    const member = new Member(makeProgram());
    member.ok({ id: 'e1', type: 'enroll', occurredAt: '2026-03-01T11:00:00Z', attributes: { email: 'ana@example.com' }, segments: ['vip'] });
    member.ok(purchase('p1', '2026-03-01T12:00:00Z', 60000));
    const ledgerBefore = member.ledger.length;
    member.ok({ id: 'x1', type: 'erase', occurredAt: '2026-03-02T11:00:00Z' });
    expect(member.state).toMatchObject({ status: 'erased', attributes: {}, segments: [] });
    expect(member.spendable).toBe(600);
    expect(member.ledger).toHaveLength(ledgerBefore);
    member.rejected(purchase('p2', '2026-03-03T12:00:00Z', 1000), 'MEMBER_ERASED');
    member.rejected({ id: 'e2', type: 'enroll', occurredAt: '2026-03-03T12:00:00Z' }, 'MEMBER_ERASED');
  });

  it('unenroll and erase of an unknown member are refused, never create a member', () => {
    const member = new Member(makeProgram());
    member.rejected({ id: 'u', type: 'unenroll', occurredAt: '2026-03-01T11:00:00Z' }, 'UNKNOWN_MEMBER');
    member.rejected({ id: 'x', type: 'erase', occurredAt: '2026-03-01T11:00:00Z' }, 'UNKNOWN_MEMBER');
    expect(member.state).toBeUndefined();
  });
});
