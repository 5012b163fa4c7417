import { describe, expect, it } from 'vitest';
import { activity, adjust, makeProgram, Member, purchase, redeem } from './helpers.js';

/** Issue item 6: lots, rolling, calendar and inactivity expiry, and the wallet view. */

describe('rolling expiry', () => {
  const program = () => makeProgram({ currencies: [{ id: 'points', expiry: { kind: 'rolling', months: 12 }, expiringSoonDays: 30 }] });

  it('points from March expire in March next year, at the end of the day', () => {
    const member = new Member(program());
    member.ok(purchase('march', '2026-03-05T10:00:00Z', 10000));
    member.ok(purchase('june', '2026-06-20T10:00:00Z', 5000));
    expect(member.sweep('2027-03-05T23:59:59Z').outcomes.filter((outcome) => outcome.kind === 'points_expired')).toEqual([]);
    const expired = member.sweep('2027-03-06T00:00:00Z');
    expect(member.outcomesOf('points_expired', expired)).toMatchObject([{ currency: 'points', points: 100, reason: 'lot_expired' }]);
    expect(member.spendable).toBe(50);
    const entry = member.ledger.find((candidate) => candidate.kind === 'expire')!;
    expect(entry).toMatchObject({ points: -100, lotExpiresAtMs: Date.parse('2027-03-06T00:00:00Z'), occurredAtMs: Date.parse('2027-03-06T00:00:00Z') });
  });

  it('an event applies expiry due at its own time first', () => {
    const member = new Member(program());
    member.ok(purchase('march', '2026-03-05T10:00:00Z', 10000));
    member.rejected(redeem('late', '2027-04-01T10:00:00Z', 'mug', 50), 'INSUFFICIENT_POINTS');
    member.ok(purchase('april', '2027-04-01T10:00:00Z', 1000));
    expect(member.spendable).toBe(10);
  });

  it('warns once about points expiring within the horizon', () => {
    const member = new Member(program());
    member.ok(purchase('march', '2026-03-05T10:00:00Z', 10000));
    expect(member.sweep('2027-02-01T00:00:00Z').outcomes).toEqual([]);
    const warned = member.sweep('2027-02-05T00:00:00Z');
    expect(member.outcomesOf('points_expiring', warned)).toMatchObject([
      { currency: 'points', items: [{ expiresAtMs: Date.parse('2027-03-06T00:00:00Z'), points: 100 }] },
    ]);
    expect(warned.outcomes[0]!.eventId).toBe(`sweep:m1:${Date.parse('2027-02-05T00:00:00Z')}`);
    expect(member.sweep('2027-02-06T00:00:00Z').outcomes).toEqual([]);
  });

  it('a sweep with nothing due returns the same state object (no write needed)', () => {
    const member = new Member(program());
    member.ok(purchase('march', '2026-03-05T10:00:00Z', 10000));
    const before = member.state;
    const decision = member.sweep('2026-03-06T00:00:00Z');
    expect(decision.state).toBe(before);
  });

  it('lots expiring on the same day merge, so state stays small', () => {
    const member = new Member(program());
    for (let index = 0; index < 20; index++) member.ok(purchase(`p${index}`, `2026-03-05T${String(index).padStart(2, '0')}:00:00Z`, 100));
    expect(member.currency().lots).toHaveLength(1);
  });
});

describe('calendar expiry', () => {
  it('points earned in 2026 expire at the end of 2027 (year, one period after)', () => {
    const program = makeProgram({ currencies: [{ id: 'points', expiry: { kind: 'calendar', period: 'year', periodsAfter: 1 } }] });
    const member = new Member(program);
    member.ok(purchase('jan', '2026-01-02T10:00:00Z', 1000));
    member.ok(purchase('dec', '2026-12-30T10:00:00Z', 2000));
    member.ok(purchase('next', '2027-01-02T10:00:00Z', 4000));
    expect(member.currency().lots).toEqual([
      { expiresAtMs: Date.parse('2028-01-01T00:00:00Z'), points: 30 },
      { expiresAtMs: Date.parse('2029-01-01T00:00:00Z'), points: 40 },
    ]);
    member.sweep('2028-01-01T00:00:00Z');
    expect(member.spendable).toBe(40);
  });

  it('quarter periods respect the program offset', () => {
    const program = makeProgram({ utcOffsetMinutes: 60, currencies: [{ id: 'points', expiry: { kind: 'calendar', period: 'quarter' } }] });
    const member = new Member(program);
    member.ok(purchase('q1', '2026-03-31T23:30:00Z', 1000)); // already 1 April at UTC+01:00
    expect(member.currency().lots[0]!.expiresAtMs).toBe(Date.parse('2026-07-01T00:00:00+01:00'));
  });
});

describe('inactivity expiry', () => {
  const program = () => makeProgram({ currencies: [{ id: 'points', expiry: { kind: 'inactivity', months: 6 }, expiringSoonDays: 14 }] });

  it('all points expire after 6 months without activity', () => {
    const member = new Member(program());
    member.ok(purchase('p1', '2026-01-10T10:00:00Z', 1000));
    member.ok(purchase('p2', '2026-02-10T10:00:00Z', 2000));
    const warned = member.sweep('2026-07-31T00:00:00Z');
    expect(member.outcomesOf('points_expiring', warned)).toMatchObject([{ items: [{ expiresAtMs: Date.parse('2026-08-10T10:00:00Z'), points: 30 }] }]);
    const expired = member.sweep('2026-08-10T10:00:00Z');
    expect(member.outcomesOf('points_expired', expired)).toMatchObject([{ points: 30, reason: 'inactivity' }]);
    expect(member.spendable).toBe(0);
  });

  it('activity extends the deadline; an operator adjustment does not', () => {
    const member = new Member(makeProgram({
      currencies: [{ id: 'points', expiry: { kind: 'inactivity', months: 6 } }],
      activities: [{ id: 'review', activity: 'review', points: 5 }],
    }));
    member.ok(purchase('p1', '2026-01-10T10:00:00Z', 1000));
    member.ok(activity('a1', '2026-06-01T10:00:00Z', 'review'));
    member.ok(adjust('adj', '2026-11-01T10:00:00Z', 'credit', 1));
    member.sweep('2026-11-30T00:00:00Z');
    expect(member.spendable).toBe(16);
    member.sweep('2026-12-01T10:00:00Z');
    expect(member.spendable).toBe(0);
    expect(member.wallet('2026-12-02T00:00:00Z').currencies[0]!.inactivityDeadlineMs).toBeNull();
  });
});

describe('wallet view', () => {
  it('shows balances, pending with release dates, expiring amounts by date, tier progress and vouchers', () => {
    const program = makeProgram({
      currencies: [{ id: 'points', expiry: { kind: 'rolling', months: 12 } }],
      earn: { pendingDays: 14 },
      tierQualification: { window: { kind: 'calendar_year' } },
      benefits: [{ id: 'silver-gift', name: 'Gift', trigger: { kind: 'tier_reached', tierId: 'silver' }, issue: { kind: 'voucher', validDays: 60 } }],
    });
    const member = new Member(program);
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 60000));
    member.ok(purchase('p2', '2026-04-01T10:00:00Z', 5000));
    const wallet = member.wallet('2026-04-02T00:00:00Z');
    expect(wallet.currencies[0]).toMatchObject({
      spendable: 600,
      pending: 50,
      pendingReleases: [{ releaseAtMs: Date.parse('2026-04-16T00:00:00Z'), points: 50 }],
      expiring: [{ expiresAtMs: Date.parse('2027-03-02T00:00:00Z'), points: 600 }],
    });
    expect(wallet.tier).toMatchObject({
      id: 'silver',
      measure: 650,
      next: { id: 'gold', threshold: 2000, remaining: 1350 },
      keep: { threshold: 500, remaining: 0, byMs: Date.parse('2027-01-01T00:00:00Z') },
    });
    expect(wallet.vouchers).toHaveLength(1);
    expect(member.wallet('2026-05-02T00:00:00Z').vouchers).toHaveLength(0); // expired after 60 days
  });
});
