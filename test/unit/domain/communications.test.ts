import { describe, expect, it } from 'vitest';
import { nextDueMs, type Outcome } from '../../../src/domain/index.js';
import { loadProgram, Member, ms, purchase } from './helpers.js';

/**
 * Issue 16, item 5: outcomes a mailing service consumes. Welcome (membership enrolled), tier status (tier, and the
 * digest's tier progress), points balance digests (balance_digest, from the sweep), benefit notices (benefit,
 * paid_membership renewal_due, points_expiring, badge).
 */

const hybrid = loadProgram('hybrid');

describe('member communication outcomes', () => {
  it('a new member gets the welcome outcome, then a balance digest at each month start, from the sweep only', () => {
    const member = new Member(hybrid, 'alice');
    const first = member.ok(purchase('p1', '2026-03-10T10:00:00Z', 60_000)); // 600 points: Silver (its +25 % from the next purchase on)
    expect(first.outcomes.map((outcome) => outcome.kind)).toEqual(['membership', 'tier', 'badge', 'badge', 'balance']);
    expect(first.outcomes[0]).toMatchObject({ kind: 'membership', action: 'enrolled' });
    // The first digest is due at the next month start at the program offset (UTC+01:00), and the due index knows it.
    expect(member.state!.digestAtMs).toBe(ms('2026-04-01T00:00:00+01:00'));
    expect(nextDueMs(member.state!, hybrid)).toBe(ms('2026-04-01T00:00:00+01:00'));
    // Events do not send digests; the sweep does, once per period.
    member.ok(purchase('p2', '2026-04-02T10:00:00Z', 1_000));
    expect(member.outcomesOf('balance_digest')).toEqual([]);
    const digest = member.sweep('2026-04-02T12:00:00Z');
    expect(member.outcomesOf('balance_digest', digest)).toEqual([
      {
        kind: 'balance_digest',
        eventId: 'sweep:alice:' + ms('2026-04-02T12:00:00Z'),
        memberId: 'alice',
        occurredAtMs: ms('2026-04-02T12:00:00Z'),
        period: 'month',
        currencies: [{ currency: 'points', spendable: 600 + 10 + 2, pending: 0, debt: 0, expiringPoints: 0 }],
        tierId: 'silver',
        nextTier: { tierId: 'gold', remaining: 2000 - 612 },
        keepTier: { remaining: 0, byMs: ms('2027-01-01T00:00:00+01:00') },
        paidPlanId: null,
        badges: 2,
      },
    ]);
    expect(member.state!.digestAtMs).toBe(ms('2026-05-01T00:00:00+01:00'));
    expect(member.sweep('2026-04-03T12:00:00Z').outcomes).toEqual([]);
    // An unenrolled member gets no digest, and is not due for one.
    member.ok({ id: 'u1', type: 'unenroll', occurredAt: '2026-04-10T10:00:00Z' });
    expect(member.sweep('2026-05-02T12:00:00Z').outcomes.filter((outcome: Outcome) => outcome.kind === 'balance_digest')).toEqual([]);
  });

  it('the digest counts the points expiring before the next one', () => {
    const member = new Member(hybrid, 'bob');
    member.ok(purchase('p1', '2026-03-10T10:00:00Z', 10_000)); // 100 points, expiring at the end of 10 March 2027
    member.sweep('2026-04-01T12:00:00Z');
    const digest = member.sweep('2027-03-01T12:00:00Z');
    expect(member.outcomesOf('balance_digest', digest)).toMatchObject([{ currencies: [{ currency: 'points', spendable: 100, expiringPoints: 100 }] }]);
    // The expiring-soon notice of the currency (expiringSoonDays: 30) comes with it.
    expect(member.outcomesOf('points_expiring', digest)).toMatchObject([{ items: [{ points: 100 }] }]);
  });
});
