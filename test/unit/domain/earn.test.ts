import { describe, expect, it } from 'vitest';
import { activity, item, makeProgram, Member, purchase } from './helpers.js';

/** Issue items 1 and 2: currencies, earn rules, tier multipliers, activities. */

const rulesProgram = () =>
  makeProgram({
    earn: {
      points: 1,
      perAmountMinor: 100,
      rounding: 'floor',
      rules: [
        { id: 'shoes-double', when: { categories: ['shoes'] }, award: { kind: 'multiplier', percent: 200 } },
        { id: 'coffee-bonus', when: { skus: ['COFFEE'] }, award: { kind: 'bonus', points: 20, per: 'unit' } },
        { id: 'app-order', when: { channels: ['app'] }, award: { kind: 'bonus', points: 50 } },
        { id: 'partner-triple', when: { partners: ['outlet'] }, award: { kind: 'multiplier', percent: 300 } },
        { id: 'big-basket', when: { minBasketMinor: 20000 }, award: { kind: 'bonus', points: 100 } },
      ],
    },
  });

function pointsByRule(member: Member, eventId: string): Record<string, number> {
  const result: Record<string, number> = {};
  for (const entry of member.ledger) {
    if (entry.eventId !== eventId || entry.balance !== 'spendable') continue;
    result[entry.ruleId] = (result[entry.ruleId] ?? 0) + entry.points;
  }
  return result;
}

describe('earn: base rate and rounding', () => {
  it('1 point per euro, rounded down as the program says', () => {
    const member = new Member(makeProgram());
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 1999));
    expect(member.spendable).toBe(19);
    expect(member.qualifying).toBe(19);
    expect(member.ledger.map((entry) => entry.ruleId)).toEqual(['earn:base', 'earn:base']);
  });

  it('half_up and ceil round as named', () => {
    const halfUp = new Member(makeProgram({ earn: { rounding: 'half_up' } }));
    halfUp.ok(purchase('p1', '2026-03-01T10:00:00Z', 1950));
    expect(halfUp.spendable).toBe(20);
    const ceil = new Member(makeProgram({ earn: { rounding: 'ceil' } }));
    ceil.ok(purchase('p1', '2026-03-01T10:00:00Z', 1901));
    expect(ceil.spendable).toBe(20);
  });

  it('refuses a purchase in another money currency', () => {
    const member = new Member(makeProgram());
    member.ok(purchase('p0', '2026-03-01T10:00:00Z', 100));
    member.rejected({ ...purchase('p1', '2026-03-01T10:00:00Z', 1000), currency: 'USD' }, 'CURRENCY_NOT_ACCEPTED');
  });
});

describe('earn rules: every ledger entry names its rule', () => {
  it('category multiplier, per-unit SKU bonus, channel bonus and basket bonus add up', () => {
    const member = new Member(rulesProgram());
    member.ok(
      purchase('p1', '2026-03-01T10:00:00Z', 25000, {
        channel: 'app',
        items: [item('RUNNER', 1, 15000, 'shoes'), item('COFFEE', 2, 5000, 'food')],
      }),
    );
    expect(pointsByRule(member, 'p1')).toEqual({
      'earn:base': 250,
      'shoes-double': 150, // the shoes line's 150 base points, once more
      'coffee-bonus': 40, // 20 per bag × 2
      'app-order': 50,
      'big-basket': 100,
    });
    expect(member.spendable).toBe(590);
  });

  it('partner multipliers apply to the whole order; rules whose conditions fail give nothing', () => {
    const member = new Member(rulesProgram());
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 1000, { partner: 'outlet', channel: 'web' }));
    expect(pointsByRule(member, 'p1')).toEqual({ 'earn:base': 10, 'partner-triple': 20 });
  });

  it('tier multipliers add to the base for Silver and Gold', () => {
    const program = makeProgram({
      tiers: [
        { id: 'member', name: 'Member', qualifyingPointsMin: 0 },
        { id: 'gold', name: 'Gold', qualifyingPointsMin: 100, earnMultiplierPercent: 150 },
      ],
    });
    const member = new Member(program);
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 10000));
    expect(member.tier).toBe('gold');
    member.ok(purchase('p2', '2026-03-02T10:00:00Z', 10000));
    expect(pointsByRule(member, 'p2')).toEqual({ 'earn:base': 100, 'earn:tier:gold': 50 });
  });

  it('a program can issue more than one points currency (miles and points)', () => {
    const program = makeProgram({
      currencies: [{ id: 'miles' }, { id: 'points', qualifying: false }],
      earn: {
        currency: 'miles',
        points: 5,
        perAmountMinor: 100,
        rounding: 'floor',
        rules: [{ id: 'car', when: { partners: ['cars'] }, award: { kind: 'bonus', points: 500 }, currency: 'points' }],
      },
    });
    const member = new Member(program);
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 2000, { partner: 'cars' }));
    expect(member.currency('miles')).toMatchObject({ spendable: 100, qualifying: 100 });
    expect(member.currency('points')).toMatchObject({ spendable: 500, qualifying: 0 });
    const balances = member.outcomesOf('balance', member.last);
    expect(balances.map((outcome) => [outcome.currency, outcome.delta])).toEqual([
      ['miles', 100],
      ['points', 500],
    ]);
  });
});

describe('activities: fixed points with per-member frequency caps', () => {
  const program = () =>
    makeProgram({
      activities: [
        { id: 'review', activity: 'review', points: 25, cap: { count: 2, period: 'month' } },
        { id: 'profile', activity: 'profile_completed', points: 100, cap: { count: 1, period: 'lifetime' } },
        { id: 'newsletter', activity: 'newsletter_signup', points: 50 },
        { id: 'referral', activity: 'referral', points: 250, qualifying: true },
        { id: 'app-install', activity: 'custom', customType: 'app_install', points: 75 },
      ],
    });

  it('credits each activity under its own rule, spendable at once', () => {
    const member = new Member(program());
    member.ok(activity('a1', '2026-03-01T10:00:00Z', 'review'));
    member.ok(activity('a2', '2026-03-01T11:00:00Z', 'profile_completed'));
    member.ok(activity('a3', '2026-03-01T12:00:00Z', 'newsletter_signup'));
    member.ok(activity('a4', '2026-03-01T13:00:00Z', 'referral'));
    member.ok(activity('a5', '2026-03-01T14:00:00Z', 'custom', 'app_install'));
    expect(member.spendable).toBe(25 + 100 + 50 + 250 + 75);
    expect(member.qualifying).toBe(250); // only the referral counts toward tiers here
    expect(new Set(member.ledger.map((entry) => entry.ruleId))).toEqual(new Set(['review', 'profile', 'newsletter', 'referral', 'app-install']));
  });

  it('two reviews a month, the third is refused with the reason, next month counts again', () => {
    const member = new Member(program());
    member.ok(activity('r1', '2026-03-01T10:00:00Z', 'review'));
    member.ok(activity('r2', '2026-03-15T10:00:00Z', 'review'));
    const reason = member.rejected(activity('r3', '2026-03-31T10:00:00Z', 'review'), 'ACTIVITY_CAP_REACHED');
    expect(reason).toContain('at most 2 times per month');
    member.ok(activity('r4', '2026-04-01T00:00:00Z', 'review'));
    expect(member.spendable).toBe(75);
  });

  it('profile completion pays once in a lifetime; unknown activities are refused', () => {
    const member = new Member(program());
    member.ok(activity('p1', '2026-03-01T10:00:00Z', 'profile_completed'));
    member.rejected(activity('p2', '2027-03-01T10:00:00Z', 'profile_completed'), 'ACTIVITY_CAP_REACHED');
    member.rejected(activity('x', '2027-03-01T10:00:00Z', 'custom', 'dance'), 'UNKNOWN_ACTIVITY');
  });
});
