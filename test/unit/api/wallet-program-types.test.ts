import { describe, expect, it } from 'vitest';
import { walletBody, walletJson, walletResponse, walletResponseSchema } from '../../../src/api/views.js';
import { loadProgram, Member, purchase } from '../domain/helpers.js';

/** Issue 16: the wallet's paid membership and badges, written by hand exactly as the response schema's serializer writes them. */

const hybrid = loadProgram('hybrid');

describe('wallet body with a paid membership and badges', () => {
  it('walletBody equals walletJson(walletResponse) and validates against the response schema', () => {
    const member = new Member(hybrid, 'w-1');
    member.ok(purchase('p1', '2026-03-01T10:00:00Z', 60_000, { items: [{ sku: 'B', category: 'books', quantity: 1, unitPriceMinor: 60_000 }] }));
    const none = member.wallet('2026-03-01T12:00:00Z');
    expect(walletBody(none, hybrid)).toBe(walletJson(walletResponse(none, hybrid)));
    member.ok({ id: 'f1', type: 'membership_fee', occurredAt: '2026-03-02T10:00:00Z', planId: 'premium-monthly', amountMinor: 499, currency: 'EUR' });
    for (const at of ['2026-03-03T00:00:00Z', '2026-05-01T00:00:00Z']) {
      const view = member.wallet(at); // active, then lapsed (swept in the view)
      const body = walletBody(view, hybrid);
      expect(body).toBe(walletJson(walletResponse(view, hybrid)));
      expect(walletResponseSchema.safeParse(JSON.parse(body)).success).toBe(true);
    }
    expect(JSON.parse(walletBody(member.wallet('2026-05-01T00:00:00Z'), hybrid))).toMatchObject({
      paidMembership: { planId: 'premium-monthly', status: 'lapsed', endedAt: '2026-04-05T10:00:00.000Z' },
      badges: expect.arrayContaining([{ id: 'first-order', name: 'First order', earnedAt: '2026-03-01T10:00:00.000Z', progress: 1, target: 1 }]),
    });
  });
});
