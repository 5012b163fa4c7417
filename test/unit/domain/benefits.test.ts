import { describe, expect, it } from 'vitest';
import { voucherCode } from '../../../src/domain/index.js';
import { makeProgram, Member, purchase } from './helpers.js';

/** Issue item 9: benefits and vouchers. */

const program = () =>
  makeProgram({
    challenges: [{ id: 'three-in-thirty', name: '3 purchases in 30 days', kind: 'purchase_count', count: 3, withinDays: 30, minAmountMinor: 1000, repeatable: true }],
    benefits: [
      { id: 'silver-shipping', name: 'Free shipping', trigger: { kind: 'tier_reached', tierId: 'silver' }, issue: { kind: 'free_shipping', validDays: 365, codePrefix: 'SHIP' } },
      { id: 'gold-welcome', name: 'Gold welcome', trigger: { kind: 'tier_reached', tierId: 'gold' }, issue: { kind: 'voucher', validDays: 90, codePrefix: 'GOLD' } },
      { id: 'challenge-voucher', name: '3-in-30', trigger: { kind: 'challenge_completed', challengeId: 'three-in-thirty' }, issue: { kind: 'voucher', validDays: 30, codePrefix: 'CH3' } },
      { id: 'thousand', name: '1000 points', trigger: { kind: 'points_milestone', points: 1000 }, issue: { kind: 'voucher', validDays: 30, codePrefix: 'MS' } },
    ],
  });

describe('benefits', () => {
  it('reaching a tier issues its benefit once; jumping two tiers issues both', () => {
    const member = new Member(program());
    const decision = member.ok(purchase('big', '2026-03-01T10:00:00Z', 250000));
    const benefits = member.outcomesOf('benefit', decision);
    expect(benefits.map((benefit) => benefit.benefitId)).toEqual(['thousand', 'silver-shipping', 'gold-welcome']);
    expect(benefits[2]).toMatchObject({ benefitKind: 'voucher', code: voucherCode('GOLD', 'm1', 'big', 'gold-welcome') });
    expect(benefits[2]!.code).toMatch(/^GOLD-[0-9A-Z]{11}$/);
  });

  it('codes are deterministic: the same events give the same codes', () => {
    const first = new Member(program());
    const second = new Member(program());
    first.ok(purchase('big', '2026-03-01T10:00:00Z', 250000));
    second.ok(purchase('big', '2026-03-01T10:00:00Z', 250000));
    expect(first.state!.vouchers).toEqual(second.state!.vouchers);
    const other = new Member(program(), 'm2');
    other.ok(purchase('big', '2026-03-01T10:00:00Z', 250000));
    expect(other.state!.vouchers[1]!.code).not.toBe(first.state!.vouchers[1]!.code);
  });

  it('a challenge completes at 3 purchases within 30 days, and again after 3 more', () => {
    const member = new Member(program());
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 1000));
    member.ok(purchase('small', '2026-03-02T10:00:00Z', 999)); // below the minimum: does not count
    member.ok(purchase('p2', '2026-03-10T10:00:00Z', 1000));
    const third = member.ok(purchase('p3', '2026-03-30T10:00:00Z', 1000));
    expect(member.outcomesOf('benefit', third)).toMatchObject([{ benefitId: 'challenge-voucher', reason: 'completed challenge 3 purchases in 30 days' }]);
    member.ok(purchase('p4', '2026-04-01T10:00:00Z', 1000));
    member.ok(purchase('p5', '2026-05-15T10:00:00Z', 1000)); // p4 fell out of the window
    member.ok(purchase('p6', '2026-05-16T10:00:00Z', 1000));
    expect(member.outcomesOf('benefit').filter((benefit) => benefit.benefitId === 'challenge-voucher')).toHaveLength(1);
    member.ok(purchase('p7', '2026-05-17T10:00:00Z', 1000));
    expect(member.outcomesOf('benefit').filter((benefit) => benefit.benefitId === 'challenge-voucher')).toHaveLength(2);
  });

  it('a voucher is redeemed once; entitlements are not redeemable; unknown and expired codes are refused', () => {
    const member = new Member(program());
    member.ok(purchase('big', '2026-03-01T10:00:00Z', 250000));
    const shipping = member.state!.vouchers.find((voucher) => voucher.benefitId === 'silver-shipping');
    const gold = member.state!.vouchers.find((voucher) => voucher.benefitId === 'gold-welcome');
    const redeemed = member.ok({ id: 'v1', type: 'voucher_redeem', occurredAt: '2026-03-02T10:00:00Z', code: gold!.code });
    expect(member.outcomesOf('voucher_redeemed', redeemed)).toMatchObject([{ code: gold!.code, benefitId: 'gold-welcome' }]);
    member.rejected({ id: 'v2', type: 'voucher_redeem', occurredAt: '2026-03-03T10:00:00Z', code: gold!.code }, 'VOUCHER_ALREADY_REDEEMED');
    member.rejected({ id: 'v3', type: 'voucher_redeem', occurredAt: '2026-03-03T10:00:00Z', code: shipping!.code }, 'VOUCHER_NOT_REDEEMABLE');
    member.rejected({ id: 'v4', type: 'voucher_redeem', occurredAt: '2026-03-03T10:00:00Z', code: 'NOPE-1' }, 'VOUCHER_UNKNOWN');
    const milestone = member.state!.vouchers.find((voucher) => voucher.benefitId === 'thousand')!;
    member.rejected({ id: 'v5', type: 'voucher_redeem', occurredAt: '2026-04-15T10:00:00Z', code: milestone.code }, 'VOUCHER_UNKNOWN');
  });

  it('a milestone is issued once even after a return brings lifetime points back under it', () => {
    const member = new Member(makeProgram({ ...{ returns: { windowDays: 10 } }, benefits: [
      { id: 'thousand', name: '1000 points', trigger: { kind: 'points_milestone', points: 1000 }, issue: { kind: 'voucher', validDays: 30 } },
    ] }));
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 100000));
    member.ok({ id: 'r1', type: 'return', occurredAt: '2026-03-02T10:00:00Z', orderId: 'p1', amountMinor: 100000 });
    member.ok(purchase('p2', '2026-03-03T10:00:00Z', 100000));
    expect(member.outcomesOf('benefit')).toHaveLength(1);
  });
});
