import { describe, expect, it } from 'vitest';
import { makeProgram, Member, purchase, refund } from './helpers.js';

/** Issue item 7: tiers, windows, upgrades, downgrades, grace. */

const tiers = [
  { id: 'member', name: 'Member', qualifyingPointsMin: 0 },
  { id: 'silver', name: 'Silver', qualifyingPointsMin: 500 },
  { id: 'gold', name: 'Gold', qualifyingPointsMin: 2000 },
];

const yearly = (extra: Record<string, unknown> = {}) =>
  makeProgram({ tiers, tierQualification: { window: { kind: 'calendar_year' }, ...extra } });

describe('upgrades are immediate', () => {
  it('a purchase that crosses the threshold upgrades at once, with the reason', () => {
    const member = new Member(yearly());
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 40000));
    const decision = member.ok(purchase('p2', '2026-03-02T10:00:00Z', 170000));
    expect(member.tier).toBe('gold');
    expect(member.outcomesOf('tier', decision)).toEqual([
      expect.objectContaining({ fromTierId: 'member', toTierId: 'gold', direction: 'up', reason: '2100 qualifying points reached Gold (2000)' }),
    ]);
    expect(member.outcomesOf('balance', decision)[0]!.tierId).toBe('gold');
  });
});

describe('calendar-year window: downgrade at the end of the period', () => {
  it('gold earned in 2026 holds through 2027, drops one step at the end of 2027', () => {
    const member = new Member(yearly());
    member.ok(purchase('p1', '2026-05-01T10:00:00Z', 250000));
    expect(member.tier).toBe('gold');
    const newYear = member.sweep('2027-01-01T00:00:00Z');
    expect(member.tier).toBe('gold');
    expect(member.qualifying).toBe(0); // the 2026 window closed: its points lapse, ledgered
    expect(member.ledger.filter((entry) => entry.kind === 'qualifying_lapse').map((entry) => entry.points)).toEqual([-2500]);
    expect(member.outcomesOf('balance', newYear)[0]).toMatchObject({ qualifyingDelta: -2500, delta: 0 });
    const yearAfter = member.sweep('2028-01-01T00:00:00Z');
    expect(member.tier).toBe('silver');
    expect(member.outcomesOf('tier', yearAfter)[0]).toMatchObject({ fromTierId: 'gold', toTierId: 'silver', direction: 'down' });
    expect(member.outcomesOf('tier', yearAfter)[0]!.reason).toContain('is below Gold (2000)');
  });

  it('a member seen again years later lands exactly where yearly sweeps would have put them', () => {
    const swept = new Member(yearly());
    const idle = new Member(yearly());
    for (const member of [swept, idle]) member.ok(purchase('p1', '2026-05-01T10:00:00Z', 250000));
    swept.sweep('2027-01-01T00:00:00Z');
    swept.sweep('2028-01-01T00:00:00Z');
    swept.sweep('2029-01-01T00:00:00Z');
    idle.sweep('2029-06-01T00:00:00Z');
    expect(idle.tier).toBe('member');
    expect(swept.tier).toBe('member');
  });

  it('downgrade to_supported goes straight to the tier the balance supports', () => {
    const member = new Member(yearly({ downgrade: 'to_supported' }));
    member.ok(purchase('p1', '2026-05-01T10:00:00Z', 250000));
    member.sweep('2027-01-01T00:00:00Z');
    member.ok(purchase('p2', '2027-05-01T10:00:00Z', 10000));
    member.sweep('2028-01-01T00:00:00Z');
    expect(member.tier).toBe('member');
  });

  it('requalifying in the year keeps the tier', () => {
    const member = new Member(yearly());
    member.ok(purchase('p1', '2026-05-01T10:00:00Z', 250000));
    member.ok(purchase('p2', '2027-05-01T10:00:00Z', 200000));
    member.sweep('2028-01-01T00:00:00Z');
    expect(member.tier).toBe('gold');
  });
});

describe('grace period', () => {
  it('a member who requalifies within the grace period keeps the tier', () => {
    const member = new Member(yearly({ graceDays: 30 }));
    member.ok(purchase('p1', '2026-05-01T10:00:00Z', 250000));
    member.sweep('2028-01-01T00:00:00Z');
    expect(member.tier).toBe('gold');
    expect(member.state!.tierGrace).toEqual({ untilMs: Date.parse('2028-01-31T00:00:00Z'), targetTierId: 'silver' });
    expect(member.wallet('2028-01-02T00:00:00Z').tier.grace).not.toBeNull();
    member.ok(purchase('p2', '2028-01-20T10:00:00Z', 200000));
    expect(member.state!.tierGrace).toBeNull(); // requalified: the downgrade is called off at once
    member.sweep('2028-02-01T00:00:00Z');
    expect(member.tier).toBe('gold');
    expect(member.state!.tierGrace).toBeNull();
  });

  it('without requalifying the downgrade lands when the grace period ends', () => {
    const member = new Member(yearly({ graceDays: 30 }));
    member.ok(purchase('p1', '2026-05-01T10:00:00Z', 250000));
    member.sweep('2028-01-01T00:00:00Z');
    member.ok(purchase('p2', '2028-01-20T10:00:00Z', 60000)); // supports silver only
    const end = member.sweep('2028-01-31T00:00:00Z');
    expect(member.tier).toBe('silver');
    expect(member.outcomesOf('tier', end)[0]!.reason).toContain('grace period ended');
  });
});

describe('rolling window', () => {
  it('reviews at every month end over the last N months', () => {
    const member = new Member(makeProgram({ tiers, tierQualification: { window: { kind: 'rolling_months', months: 3 }, downgrade: 'to_supported' } }));
    member.ok(purchase('p1', '2026-01-15T10:00:00Z', 60000));
    expect(member.tier).toBe('silver');
    member.sweep('2026-03-31T00:00:00Z');
    expect(member.qualifying).toBe(600);
    member.sweep('2026-04-01T00:00:00Z'); // January leaves the window Feb-Apr: review of Jan-Mar keeps silver
    expect(member.qualifying).toBe(0);
    expect(member.tier).toBe('silver');
    member.sweep('2026-05-01T00:00:00Z'); // review of Feb-Apr: nothing
    expect(member.tier).toBe('member');
  });
});

describe('spend-based tiers', () => {
  it('tiers can be measured on spend, and a refund lowers it', () => {
    const program = makeProgram({
      tiers: [
        { id: 'member', name: 'Member', qualifyingSpendMinorMin: 0 },
        { id: 'vip', name: 'VIP', qualifyingSpendMinorMin: 100000 },
      ],
      tierQualification: { basis: 'spend', window: { kind: 'calendar_year' } },
      returns: { windowDays: 30 },
    });
    const member = new Member(program);
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 100000));
    expect(member.tier).toBe('vip');
    member.ok(refund('f1', '2026-03-02T10:00:00Z', 'p1', 50000));
    expect(member.wallet('2026-03-03T00:00:00Z').tier).toMatchObject({ basis: 'spend', measure: 50000, keep: { threshold: 100000, remaining: 50000 } });
    member.sweep('2027-01-01T00:00:00Z');
    expect(member.tier).toBe('member');
  });
});

describe('a return lowers the tier measure, not the tier (until the period ends)', () => {
  it('qualifying points of the returned order leave the window', () => {
    const member = new Member(makeProgram({ tiers, tierQualification: { window: { kind: 'calendar_year' } }, returns: { windowDays: 14 } }));
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 60000));
    expect(member.tier).toBe('silver');
    member.ok(refund('f1', '2026-03-05T10:00:00Z', 'p1', 60000));
    expect(member.qualifying).toBe(0);
    expect(member.tier).toBe('silver');
    member.sweep('2027-01-01T00:00:00Z');
    expect(member.tier).toBe('member');
  });
});
