import { describe, expect, it } from 'vitest';
import { item, loadProgram, Member, purchase, redeem, returnLines } from './helpers.js';

/**
 * A loyalty manager's year with the retail program (config/programs/retail.yaml):
 * a member reaches Gold in March, buys three items in Cyber Week, returns one
 * on day 10, redeems on day 20, and the March points expire in March next year.
 */
describe('retail: a Gold member through Cyber Week', () => {
  const member = new Member(loadProgram('retail'), 'ana');

  it('reaches Gold in March: points pending for 14 days, status at once, welcome benefits', () => {
    member.ok({ id: 'join', type: 'enroll', occurredAt: '2026-01-15T09:00:00+01:00', attributes: { country: 'DE' } });
    const march = member.ok(purchase('march', '2026-03-10T10:00:00+01:00', 250000, { channel: 'web' }));
    expect(member.pending).toBe(2600); // 2,500 base + 100 for a basket over 200 EUR
    expect(member.spendable).toBe(0);
    expect(member.tier).toBe('gold');
    expect(member.outcomesOf('benefit', march).map((benefit) => benefit.benefitId)).toEqual(['silver-shipping', 'gold-welcome']);
    member.sweep('2026-03-25T00:00:00+01:00');
    expect(member.spendable).toBe(2600);
  });

  it('Cyber Week: every rule, the Gold multiplier and both promotions, each on its own ledger line', () => {
    const decision = member.ok(
      purchase('cyber', '2026-11-24T18:00:00+01:00', 44000, {
        channel: 'web',
        items: [item('RUNNER', 1, 12000, 'shoes'), item('TV-55', 1, 30000, 'electronics'), item('SKU-COFFEE-1KG', 1, 2000, 'food')],
      }),
    );
    const byRule: Record<string, number> = {};
    for (const entry of decision.ledger) if (entry.balance === 'pending') byRule[entry.ruleId] = entry.points;
    expect(byRule).toEqual({
      'earn:base': 440,
      'earn:tier:gold': 220, // Gold earns 150 %
      'big-basket': 100,
      'shoes-double': 120, // the shoes line's base, doubled
      'coffee-bonus': 20,
      'cyber-week': 440, // double points on the base
      'gold-electronics': 300,
    });
    expect(member.pending).toBe(1640);
    expect(decision.budgetUsage).toEqual([{ promotionId: 'cyber-week', points: 440, uses: 1 }]);
  });

  it('day 10: returns the TV; exactly the points the TV line earned leave pending and qualifying', () => {
    const tvPoints = member.state!.orders.find((order) => order.orderId === 'cyber')!.lines[1]!.points.points!;
    expect(tvPoints).toBe(300 + 150 + 68 + 300 + 300); // base, Gold, basket share, Cyber Week, Gold electronics
    const qualifyingBefore = member.qualifying;
    const decision = member.ok(returnLines('return-tv', '2026-12-04T12:00:00+01:00', 'cyber', [{ sku: 'TV-55', quantity: 1 }]));
    expect(member.outcomesOf('return', decision)).toMatchObject([{ orderId: 'cyber', clawedBack: { points: 1118 }, shortfall: {} }]);
    expect(member.pending).toBe(1640 - 1118);
    expect(member.qualifying).toBe(qualifyingBefore - 1118);
    member.rejected(returnLines('return-tv-again', '2026-12-05T12:00:00+01:00', 'cyber', [{ sku: 'TV-55', quantity: 1 }]), 'RETURN_EXCEEDS_ORDER');
  });

  it('day 20: redeems a 20 EUR voucher from the oldest (March) points first', () => {
    const decision = member.ok(redeem('voucher', '2026-12-14T10:00:00+01:00', 'voucher-20', 1800));
    expect(member.outcomesOf('pending_released', decision)).toMatchObject([{ points: 522 }]); // the Cyber Week points, due on 9 December
    expect(member.spendable).toBe(2600 + 522 - 1800);
    expect(member.currency().lots).toEqual([
      { expiresAtMs: Date.parse('2027-03-11T00:00:00+01:00'), points: 800 },
      { expiresAtMs: Date.parse('2027-11-25T00:00:00+01:00'), points: 522 },
    ]);
  });

  it('new year: Gold is kept for 2027 (2026 qualified it), the 2026 window lapses', () => {
    member.sweep('2027-01-01T00:00:00+01:00');
    expect(member.tier).toBe('gold');
    expect(member.qualifying).toBe(0);
    const wallet = member.wallet('2027-01-02T00:00:00+01:00');
    expect(wallet.tier).toMatchObject({ id: 'gold', measure: 0, keep: { threshold: 2000, remaining: 2000, byMs: Date.parse('2028-01-01T00:00:00+01:00') } });
  });

  it('February: warned about the March points; March: they expire, the Cyber Week points stay', () => {
    const warning = member.sweep('2027-02-10T09:00:00+01:00');
    expect(member.outcomesOf('points_expiring', warning)).toMatchObject([
      { items: [{ expiresAtMs: Date.parse('2027-03-11T00:00:00+01:00'), points: 800 }] },
    ]);
    const expiry = member.sweep('2027-03-11T00:00:00+01:00');
    expect(member.outcomesOf('points_expired', expiry)).toMatchObject([{ points: 800, reason: 'lot_expired' }]);
    expect(member.spendable).toBe(522);
    expect(member.wallet('2027-03-12T00:00:00+01:00').currencies[0]!.expiring).toEqual([
      { expiresAtMs: Date.parse('2027-11-25T00:00:00+01:00'), points: 522 },
    ]);
  });
});
