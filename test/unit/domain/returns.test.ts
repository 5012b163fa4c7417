import { describe, expect, it } from 'vitest';
import { adjust, item, makeProgram, Member, purchase, redeem, refund, returnLines } from './helpers.js';

/** Issue items 3 and 4: pending points and returns. */

const program = (shortfall: 'negative' | 'floor' | 'debt' = 'floor', pendingDays = 14) =>
  makeProgram({
    earn: {
      pendingDays,
      rules: [
        { id: 'shoes-double', when: { categories: ['shoes'] }, award: { kind: 'multiplier', percent: 200 } },
        { id: 'sock-bonus', when: { skus: ['SOCKS'] }, award: { kind: 'bonus', points: 10, per: 'unit' } },
        { id: 'basket-bonus', when: { minBasketMinor: 10000 }, award: { kind: 'bonus', points: 60 } },
      ],
    },
    returns: { windowDays: 14, shortfall },
  });

const threeItems = () =>
  purchase('order-1', '2026-03-01T10:00:00Z', 15000, {
    items: [item('RUNNER', 1, 9000, 'shoes'), item('SOCKS', 3, 1000, 'apparel'), item('SHIRT', 1, 3000, 'apparel')],
  });

describe('pending points', () => {
  it('are visible as pending, not spendable, and released after 14 days by the sweep', () => {
    const member = new Member(program());
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 5000));
    expect(member.pending).toBe(50);
    expect(member.spendable).toBe(0);
    expect(member.qualifying).toBe(50); // status counts at once; spending waits
    const wallet = member.wallet('2026-03-02T00:00:00Z');
    expect(wallet.currencies[0]!.pendingReleases).toEqual([{ releaseAtMs: Date.parse('2026-03-16T00:00:00Z'), points: 50 }]);
    expect(member.sweep('2026-03-15T23:59:59Z').outcomes).toEqual([]);
    const released = member.sweep('2026-03-16T00:00:00Z');
    expect(member.outcomesOf('pending_released', released)).toMatchObject([{ currency: 'points', points: 50 }]);
    expect(member.spendable).toBe(50);
    expect(member.pending).toBe(0);
  });

  it('are released by the member\'s next event when no sweep ran', () => {
    const member = new Member(program());
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 5000));
    member.ok(purchase('p2', '2026-04-01T10:00:00Z', 1000));
    expect(member.spendable).toBe(50);
    expect(member.pending).toBe(10);
  });

  it('cannot be redeemed; the refusal says how many are pending', () => {
    const member = new Member(program());
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 5000));
    const reason = member.rejected(redeem('r1', '2026-03-02T10:00:00Z', 'mug', 40), 'INSUFFICIENT_POINTS');
    expect(reason).toContain('50 more are pending');
  });

  it('a return inside the window cancels pending points (no spendable change)', () => {
    const member = new Member(program());
    member.ok(threeItems());
    const earned = member.pending;
    member.ok(returnLines('ret-1', '2026-03-05T10:00:00Z', 'order-1', [{ sku: 'RUNNER', quantity: 1 }]));
    expect(member.pending).toBeLessThan(earned);
    expect(member.spendable).toBe(0);
    expect(member.ledger.filter((entry) => entry.kind === 'clawback').every((entry) => entry.balance !== 'spendable')).toBe(true);
  });
});

describe('returns and partial refunds', () => {
  it('claw back exactly what the returned lines earned, bonuses and multipliers included', () => {
    const member = new Member(program());
    member.ok(threeItems());
    const order = member.state!.orders[0]!;
    const runner = order.lines[0]!.points.points!;
    const socks = order.lines[1]!.points.points!;
    const shirt = order.lines[2]!.points.points!;
    // 150 base + 90 shoes-double + 30 sock bonus + 60 basket bonus, every point attributed to a line.
    expect(runner + socks + shirt).toBe(330);
    expect(member.pending).toBe(330);
    member.ok(returnLines('ret-1', '2026-03-05T10:00:00Z', 'order-1', [{ sku: 'RUNNER', quantity: 1 }]));
    expect(member.pending).toBe(330 - runner);
    expect(member.qualifying).toBe(330 - runner);
    member.ok(returnLines('ret-2', '2026-03-06T10:00:00Z', 'order-1', [{ sku: 'SOCKS', quantity: 1 }]));
    member.ok(returnLines('ret-3', '2026-03-07T10:00:00Z', 'order-1', [{ sku: 'SOCKS', quantity: 2 }]));
    expect(member.pending).toBe(shirt);
    member.ok(returnLines('ret-4', '2026-03-08T10:00:00Z', 'order-1', [{ sku: 'SHIRT', quantity: 1 }]));
    expect(member.pending).toBe(0);
    expect(member.qualifying).toBe(0);
  });

  it('never claws the same line twice', () => {
    const member = new Member(program());
    member.ok(threeItems());
    member.ok(returnLines('ret-1', '2026-03-05T10:00:00Z', 'order-1', [{ sku: 'SOCKS', quantity: 3 }]));
    const after = member.pending;
    const reason = member.rejected(returnLines('ret-2', '2026-03-06T10:00:00Z', 'order-1', [{ sku: 'SOCKS', quantity: 1 }]), 'RETURN_EXCEEDS_ORDER');
    expect(reason).toContain('SOCKS');
    expect(member.pending).toBe(after);
  });

  it('a partial refund by amount claws the refunded share; the whole refund claws everything', () => {
    const member = new Member(program());
    member.ok(purchase('o1', '2026-03-01T10:00:00Z', 10000));
    expect(member.pending).toBe(160); // 100 base + 60 basket bonus
    member.ok(refund('f1', '2026-03-02T10:00:00Z', 'o1', 2500));
    expect(member.pending).toBe(120);
    member.ok(refund('f2', '2026-03-03T10:00:00Z', 'o1', 7500));
    expect(member.pending).toBe(0);
    member.rejected(refund('f3', '2026-03-03T11:00:00Z', 'o1', 1), 'REFUND_EXCEEDS_ORDER');
  });

  it('after release a return takes spendable points, the order\'s own lot first', () => {
    const member = new Member(program('floor', 3));
    member.ok(purchase('o1', '2026-03-01T10:00:00Z', 5000));
    member.sweep('2026-03-10T00:00:00Z');
    expect(member.spendable).toBe(50);
    member.ok(refund('f1', '2026-03-12T10:00:00Z', 'o1', 5000));
    expect(member.spendable).toBe(0);
  });

  it('refuses returns after the window closed, and orders are pruned from state', () => {
    const member = new Member(program());
    member.ok(purchase('o1', '2026-03-01T10:00:00Z', 5000));
    member.ok(refund('f0', '2026-03-15T23:00:00Z', 'o1', 100)); // the whole 14th day after the purchase day counts
    member.rejected(refund('f1', '2026-03-16T00:00:00Z', 'o1', 100), 'ORDER_NOT_FOUND');
    member.sweep('2026-03-20T00:00:00Z');
    expect(member.state!.orders).toEqual([]);
  });

  it('refuses returns when the program takes none, and unknown orders', () => {
    const plain = new Member(makeProgram());
    plain.ok(purchase('o1', '2026-03-01T10:00:00Z', 5000));
    plain.rejected(refund('f1', '2026-03-02T10:00:00Z', 'o1', 100), 'RETURNS_DISABLED');
    const member = new Member(program());
    member.ok(purchase('o1', '2026-03-01T10:00:00Z', 5000));
    member.rejected(refund('f1', '2026-03-02T10:00:00Z', 'nope', 100), 'ORDER_NOT_FOUND');
    member.rejected(purchase('o1', '2026-03-02T10:00:00Z', 5000), 'DUPLICATE_ORDER');
  });
});

describe('returns when the points were already spent: the shortfall policy', () => {
  function spentMember(shortfall: 'negative' | 'floor' | 'debt'): Member {
    const member = new Member(program(shortfall, 0));
    member.ok(purchase('o1', '2026-03-01T10:00:00Z', 5000)); // 50 points, spendable at once
    member.ok(redeem('r1', '2026-03-02T10:00:00Z', 'mug', 40));
    member.ok(refund('f1', '2026-03-03T10:00:00Z', 'o1', 5000)); // claws 50, only 10 left
    return member;
  }

  it('negative: the balance goes below zero and the next earn fills it first', () => {
    const member = spentMember('negative');
    expect(member.spendable).toBe(-40);
    member.ok(purchase('o2', '2026-03-04T10:00:00Z', 10000));
    expect(member.spendable).toBe(-40 + 160);
    expect(member.currency().lots.reduce((sum, lot) => sum + lot.points, 0)).toBe(120);
  });

  it('floor: the balance stops at zero and the rest is forgiven (reported as a shortfall)', () => {
    const member = spentMember('floor');
    expect(member.spendable).toBe(0);
    expect(member.outcomesOf('return').at(-1)!.shortfall).toEqual({ points: 40 });
    member.ok(purchase('o2', '2026-03-04T10:00:00Z', 1000));
    expect(member.spendable).toBe(10);
  });

  it('debt: the balance stops at zero, a debt is recorded and repaid from future earns', () => {
    const member = spentMember('debt');
    expect(member.spendable).toBe(0);
    expect(member.currency().debt).toBe(40);
    member.ok(purchase('o2', '2026-03-04T10:00:00Z', 3000));
    expect(member.currency().debt).toBe(10);
    expect(member.spendable).toBe(0);
    member.ok(adjust('a1', '2026-03-05T10:00:00Z', 'credit', 25));
    expect(member.currency().debt).toBe(0);
    expect(member.spendable).toBe(15);
    expect(member.ledger.filter((entry) => entry.kind === 'debt_repayment' && entry.balance === 'debt').map((entry) => entry.points)).toEqual([-30, -10]);
  });
});
