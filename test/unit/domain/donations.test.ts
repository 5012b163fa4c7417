import { describe, expect, it } from 'vitest';
import { programSchema } from '../../../src/domain/index.js';
import { item, loadProgram, makeProgram, Member, purchase } from './helpers.js';

/** Issue 16, item 2: donations of points to causes, with config/programs/hybrid.yaml. */

const hybrid = loadProgram('hybrid');
const donate = (id: string, occurredAt: string, causeId: string, points: number, currency = 'points') => ({ id, type: 'donation', occurredAt, causeId, points, currency });

describe('donations', () => {
  it('debits spendable points, soonest expiry first, with a donate ledger entry and a donation outcome', () => {
    const member = new Member(hybrid, 'alice');
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 30_000, { items: [item('BOOK-1', 1, 30_000, 'books')] })); // 300, expiring March 2027
    member.ok(purchase('p2', '2026-05-01T10:00:00Z', 20_000)); // 200, expiring May 2027
    const given = member.ok(donate('d1', '2026-06-01T10:00:00Z', 'trees', 400));
    expect(given.ledger.map((entry) => [entry.kind, entry.balance, entry.points, entry.ruleId, entry.reference])).toEqual([
      ['donate', 'spendable', -300, 'trees', 'trees'],
      ['donate', 'spendable', -100, 'trees', 'trees'],
    ]);
    expect(member.outcomesOf('donation', given)).toEqual([
      { kind: 'donation', eventId: 'd1', memberId: 'alice', occurredAtMs: Date.parse('2026-06-01T10:00:00Z'), causeId: 'trees', currency: 'points', points: 400 },
    ]);
    expect(member.outcomesOf('balance', given)).toMatchObject([{ delta: -400, spendable: 100, qualifying: 500 }]); // never lowers qualifying points
    expect(member.state!.engagement!.donations).toBe(1);
    expect(member.state!.lastActivityMs).toBe(Date.parse('2026-06-01T10:00:00Z'));
  });

  it('refuses an unknown cause, another currency, a donation below the minimum, and more than the spendable points', () => {
    const member = new Member(hybrid, 'bob');
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 20_000));
    member.rejected(donate('d1', '2026-03-02T10:00:00Z', 'whales', 100), 'CAUSE_UNKNOWN');
    member.rejected(donate('d2', '2026-03-02T10:00:00Z', 'trees', 100, 'miles'), 'UNKNOWN_CURRENCY');
    expect(member.rejected(donate('d3', '2026-03-02T10:00:00Z', 'trees', 100), 'DONATION_BELOW_MINIMUM')).toContain('at least 250');
    expect(member.rejected(donate('d4', '2026-03-02T10:00:00Z', 'literacy', 201), 'INSUFFICIENT_POINTS')).toContain('has 200');
    member.ok(donate('d5', '2026-03-02T10:00:00Z', 'literacy', 200));
    expect(member.spendable).toBe(0);
  });

  it('a program without causes refuses donations; a cause must name a known currency and ids do not clash with rules', () => {
    const member = new Member(makeProgram(), 'carol');
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 20_000));
    expect(member.rejected(donate('d1', '2026-03-02T10:00:00Z', 'trees', 100), 'CAUSE_UNKNOWN')).toBe('this program takes no donations');
    const result = programSchema.safeParse({
      ...makeProgram(),
      activities: [{ id: 'trees', activity: 'review', points: 1 }],
      donations: {
        causes: [
          { id: 'trees', name: 'Trees' },
          { id: 'sea', name: 'Sea', currency: 'miles' },
        ],
      },
    });
    expect(result.error!.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`)).toEqual([
      'donations.causes.0.id: duplicate rule id trees (rules, promotions, activities and benefits share ids)',
      'donations.causes.1.currency: unknown points currency miles',
    ]);
  });
});
