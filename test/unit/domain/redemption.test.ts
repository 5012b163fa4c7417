import { describe, expect, it } from 'vitest';
import { adjust, cancelRedemption, makeProgram, Member, purchase, redeem } from './helpers.js';

/** Issue item 5: redemption and its cancellation. */

const catalogProgram = () =>
  makeProgram({
    tiers: [
      { id: 'member', name: 'Member', qualifyingPointsMin: 0 },
      { id: 'gold', name: 'Gold', qualifyingPointsMin: 2000 },
    ],
    currencies: [{ id: 'points', expiry: { kind: 'rolling', months: 12 } }],
    redemption: {
      cancelWindowDays: 30,
      rewards: [
        { id: 'voucher-5', name: '5 EUR voucher', points: 500 },
        { id: 'lounge', name: 'Lounge pass', points: 100, tiers: ['gold'] },
      ],
    },
  });

describe('redemption', () => {
  it('debits spendable points, never qualifying ones (a redemption never lowers a tier)', () => {
    const member = new Member(catalogProgram());
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 250000));
    expect(member.tier).toBe('gold');
    const decision = member.ok(redeem('r1', '2026-03-02T10:00:00Z', 'voucher-5', 500));
    expect(member.spendable).toBe(2000);
    expect(member.qualifying).toBe(2500);
    expect(member.tier).toBe('gold');
    expect(member.outcomesOf('redemption', decision)).toMatchObject([{ status: 'redeemed', rewardId: 'voucher-5', points: 500 }]);
  });

  it('refuses clearly: short balance, unknown reward, wrong price, tier not allowed', () => {
    const member = new Member(catalogProgram());
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 30000));
    expect(member.rejected(redeem('r1', '2026-03-02T10:00:00Z', 'voucher-5', 500), 'INSUFFICIENT_POINTS')).toContain('needs 500 points; the member has 300 spendable');
    member.rejected(redeem('r2', '2026-03-02T10:00:00Z', 'yacht', 300), 'REWARD_UNKNOWN');
    member.rejected(redeem('r3', '2026-03-02T10:00:00Z', 'voucher-5', 5), 'REWARD_PRICE_MISMATCH');
    expect(member.rejected(redeem('r4', '2026-03-02T10:00:00Z', 'lounge', 100), 'REWARD_NOT_ALLOWED')).toContain('the member is Member');
    member.rejected(redeem('r5', '2026-03-02T10:00:00Z', 'voucher-5', 500, 'miles'), 'UNKNOWN_CURRENCY');
  });

  it('consumes the oldest-expiring lots first', () => {
    const member = new Member(catalogProgram());
    member.ok(purchase('p1', '2026-01-10T10:00:00Z', 30000)); // expires 2027-01-11
    member.ok(purchase('p2', '2026-06-10T10:00:00Z', 30000)); // expires 2027-06-11
    member.ok(redeem('r1', '2026-07-01T10:00:00Z', 'voucher-5', 500));
    expect(member.currency().lots).toEqual([{ expiresAtMs: Date.parse('2027-06-11T00:00:00Z'), points: 100 }]);
    const debits = member.ledger.filter((entry) => entry.kind === 'redeem');
    expect(debits.map((entry) => [entry.points, entry.lotExpiresAtMs])).toEqual([
      [-300, Date.parse('2027-01-11T00:00:00Z')],
      [-200, Date.parse('2027-06-11T00:00:00Z')],
    ]);
  });

  it('a cancel restores the very same lots with their original expiry, once', () => {
    const member = new Member(catalogProgram());
    member.ok(purchase('p1', '2026-01-10T10:00:00Z', 30000));
    member.ok(purchase('p2', '2026-06-10T10:00:00Z', 30000));
    const lotsBefore = member.currency().lots;
    member.ok(redeem('r1', '2026-07-01T10:00:00Z', 'voucher-5', 500));
    const cancel = member.ok(cancelRedemption('c1', '2026-07-05T10:00:00Z', 'r1'));
    expect(member.currency().lots).toEqual(lotsBefore);
    expect(member.outcomesOf('redemption', cancel)).toMatchObject([{ status: 'cancelled', redemptionId: 'r1', points: 500 }]);
    member.rejected(cancelRedemption('c2', '2026-07-06T10:00:00Z', 'r1'), 'REDEMPTION_NOT_FOUND');
  });

  it('a lot that expired while spent comes back expired', () => {
    const member = new Member(catalogProgram());
    member.ok(purchase('p1', '2026-01-10T10:00:00Z', 50000));
    member.ok(redeem('r1', '2027-01-01T10:00:00Z', 'voucher-5', 500));
    member.ok(cancelRedemption('c1', '2027-01-20T10:00:00Z', 'r1')); // the lot expired on 2027-01-11
    expect(member.spendable).toBe(0);
    expect(member.outcomesOf('points_expired', member.last)).toMatchObject([{ points: 500 }]);
  });

  it('cannot cancel after the cancel window', () => {
    const member = new Member(catalogProgram());
    member.ok(purchase('p1', '2026-01-10T10:00:00Z', 50000));
    member.ok(redeem('r1', '2026-02-01T10:00:00Z', 'voucher-5', 500));
    member.rejected(cancelRedemption('c1', '2026-03-05T10:00:00Z', 'r1'), 'REDEMPTION_NOT_FOUND');
  });

  it('without a catalog any reward id is accepted at the price sent', () => {
    const member = new Member(makeProgram());
    member.ok(adjust('a1', '2026-01-01T00:00:00Z', 'credit', 100));
    member.ok(redeem('r1', '2026-01-02T00:00:00Z', 'anything', 60));
    expect(member.spendable).toBe(40);
  });
});
