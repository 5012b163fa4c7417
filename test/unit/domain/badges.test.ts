import { describe, expect, it } from 'vitest';
import { programSchema } from '../../../src/domain/index.js';
import { activity, item, loadProgram, makeProgram, Member, purchase } from './helpers.js';

/** Issue 16, item 3: badges and milestones, with config/programs/hybrid.yaml. */

const hybrid = loadProgram('hybrid');
const book = (id: string, occurredAt: string, amountMinor = 2_000) => purchase(id, occurredAt, amountMinor, { items: [item('BOOK', 1, amountMinor, 'books')] });
const badgeIds = (member: Member) => member.outcomesOf('badge').map((badge) => badge.badgeId);

describe('badges', () => {
  it('counts purchases and purchases in a category; each badge once, with its points and benefit', () => {
    const member = new Member(hybrid, 'alice');
    const first = member.ok(book('b1', '2026-03-01T10:00:00Z'));
    expect(member.outcomesOf('badge', first)).toEqual([
      { kind: 'badge', eventId: 'b1', memberId: 'alice', occurredAtMs: Date.parse('2026-03-01T10:00:00Z'), badgeId: 'first-order', name: 'First order', reason: '1 purchase' },
    ]);
    member.ok(purchase('c1', '2026-03-02T10:00:00Z', 2_000, { items: [item('MUG', 1, 2_000, 'kitchen')] })); // not books
    for (const [index, day] of ['03', '04', '05'].entries()) member.ok(book(`b${index + 2}`, `2026-03-${day}T10:00:00Z`));
    expect(member.state!.badgeProgress!.bookworm).toEqual({ count: 4 });
    const fifth = member.ok(book('b5', '2026-03-06T10:00:00Z'));
    expect(fifth.outcomes.map((outcome) => outcome.kind)).toEqual(['badge', 'benefit', 'balance']);
    expect(member.outcomesOf('benefit', fifth)).toMatchObject([{ benefitId: 'bookworm-voucher', reason: 'earned badge Bookworm' }]);
    expect(fifth.ledger.filter((entry) => entry.ruleId === 'bookworm')).toMatchObject([{ kind: 'activity', balance: 'spendable', points: 100, reference: 'bookworm' }]);
    expect(member.state!.badgeProgress!.bookworm).toBeUndefined();
    member.ok(book('b6', '2026-03-07T10:00:00Z'));
    expect(badgeIds(member)).toEqual(['first-order', 'bookworm']);
    const wallet = member.wallet('2026-03-08T00:00:00Z');
    expect(wallet.badges.find((badge) => badge.id === 'bookworm')).toEqual({ id: 'bookworm', name: 'Bookworm', earnedAtMs: Date.parse('2026-03-06T10:00:00Z'), progress: 5, target: 5 });
    expect(wallet.badges.find((badge) => badge.id === 'big-spender')).toMatchObject({ earnedAtMs: null, progress: 14_000, target: 50_000 });
  });

  it('a streak needs a purchase in consecutive months; a gap starts it again', () => {
    const member = new Member(hybrid, 'bob');
    member.ok(purchase('p1', '2026-01-15T10:00:00Z', 1_000));
    member.ok(purchase('p2', '2026-01-20T10:00:00Z', 1_000)); // same month: counted once
    member.ok(purchase('p3', '2026-02-10T10:00:00Z', 1_000));
    member.ok(purchase('p4', '2026-04-10T10:00:00Z', 1_000)); // March missed
    expect(member.state!.badgeProgress!.regular).toMatchObject({ count: 1 });
    member.ok(purchase('p5', '2026-05-10T10:00:00Z', 1_000));
    const third = member.ok(purchase('p6', '2026-06-01T00:30:00+01:00', 1_000));
    expect(member.outcomesOf('badge', third)).toMatchObject([{ badgeId: 'regular', reason: 'a purchase in each of 3 consecutive months' }]);
  });

  it('spend, activities and donations', () => {
    const member = new Member(hybrid, 'carol');
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 30_000));
    const big = member.ok(purchase('p2', '2026-03-02T10:00:00Z', 20_000));
    expect(member.outcomesOf('badge', big)).toMatchObject([{ badgeId: 'big-spender', reason: 'spent 50000 minor units in total (badge at 50000)' }]);
    member.ok(activity('r1', '2026-03-03T10:00:00Z', 'review'));
    member.ok(activity('r2', '2026-03-04T10:00:00Z', 'review'));
    const critic = member.ok(activity('r3', '2026-03-05T10:00:00Z', 'review'));
    expect(member.outcomesOf('badge', critic)).toMatchObject([{ badgeId: 'critic', reason: '3 review activities' }]);
    const giver = member.ok({ id: 'd1', type: 'donation', occurredAt: '2026-03-06T10:00:00Z', causeId: 'literacy', points: 100, currency: 'points' });
    expect(member.outcomesOf('badge', giver)).toMatchObject([{ badgeId: 'giver' }]);
    // A refused event counts toward nothing.
    member.rejected({ id: 'd2', type: 'donation', occurredAt: '2026-03-07T10:00:00Z', causeId: 'literacy', points: 99, currency: 'points' }, 'DONATION_BELOW_MINIMUM');
    expect(badgeIds(member)).toEqual(['first-order', 'big-spender', 'critic', 'giver']);
  });

  it('the program file refuses badges that could never be earned, and names every bad field', () => {
    const result = programSchema.safeParse({
      ...makeProgram(),
      badges: [
        { id: 'critic', name: 'Critic', rule: { kind: 'activity_count', activity: 'review', count: 3 } },
        { id: 'giver', name: 'Giver', rule: { kind: 'donation_count', count: 1 } },
        { id: 'giver', name: 'Streak', rule: { kind: 'streak', period: 'day', count: 1 } },
      ],
      benefits: [{ id: 'b', name: 'B', trigger: { kind: 'badge_earned', badgeId: 'nope' }, issue: { kind: 'custom', validDays: 1 } }],
    });
    const issues = result.error!.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^badges\.2\.rule\.period: /),
        expect.stringMatching(/^badges\.2\.rule\.count: /),
        'badges.0.rule.activity: no activity rule rewards review, so the badge could never be earned',
        'badges.1.rule: the program takes no donations (donations.causes)',
        'badges.2.id: duplicate id giver',
        'benefits.0.trigger.badgeId: unknown badge nope',
      ]),
    );
  });
});
