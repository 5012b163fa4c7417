import { describe, expect, it } from 'vitest';
import { MEMBER_ID_PATTERN, memberIdSchema, validateEvent } from '../../../src/domain/index.js';

const base = { id: 'e1', memberId: 'm-1', occurredAt: '2026-03-01T10:00:00+01:00' };

describe('validateEvent', () => {
  it('accepts one event of every type and returns the time in ms', () => {
    const events = [
      { ...base, type: 'purchase', amountMinor: 1000, currency: 'EUR', items: [{ sku: 'A', quantity: 1, unitPriceMinor: 1000 }], channel: 'app' },
      { ...base, type: 'return', orderId: 'o1', lines: [{ sku: 'A', quantity: 1 }] },
      { ...base, type: 'return', orderId: 'o1', amountMinor: 500, currency: 'EUR' },
      { ...base, type: 'redemption', rewardId: 'voucher-5', points: 500, currency: 'points' },
      { ...base, type: 'redemption_cancel', redemptionId: 'r1' },
      { ...base, type: 'activity', activity: 'review' },
      { ...base, type: 'activity', activity: 'custom', customType: 'app_install' },
      { ...base, type: 'adjustment', direction: 'credit', points: 10, currency: 'points', reason: 'goodwill', operator: 'ana' },
      { ...base, type: 'voucher_redeem', code: 'GOLD-ABC' },
      { ...base, type: 'enroll', attributes: { country: 'DE' }, segments: ['vip'] },
      { ...base, type: 'unenroll' },
      { ...base, type: 'erase' },
    ];
    for (const event of events) {
      const result = validateEvent(event);
      expect(result, JSON.stringify(event)).toMatchObject({ ok: true, occurredAtMs: Date.parse('2026-03-01T09:00:00Z') });
    }
  });

  it('names every bad field at once', () => {
    const result = validateEvent({ id: '', memberId: 'a.b', type: 'purchase', occurredAt: 'yesterday', amountMinor: -1, currency: 'eur' });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    for (const field of ['id', 'memberId', 'occurredAt', 'amountMinor', 'currency']) expect(result.reason).toContain(`${field}:`);
  });

  it('a return has lines or an amount, not both and not neither', () => {
    const neither = validateEvent({ ...base, type: 'return', orderId: 'o1' });
    const both = validateEvent({ ...base, type: 'return', orderId: 'o1', amountMinor: 5, lines: [{ sku: 'A', quantity: 1 }] });
    expect(neither.ok).toBe(false);
    expect(both.ok).toBe(false);
    if (!neither.ok) expect(neither.reason).toContain('exactly one');
  });

  it('custom activities need a customType, others must not have one', () => {
    expect(validateEvent({ ...base, type: 'activity', activity: 'custom' }).ok).toBe(false);
    expect(validateEvent({ ...base, type: 'activity', activity: 'review', customType: 'x' }).ok).toBe(false);
  });

  it('refuses unknown types and unknown fields', () => {
    const unknownType = validateEvent({ ...base, type: 'teleport' });
    expect(unknownType.ok).toBe(false);
    const extra = validateEvent({ ...base, type: 'unenroll', why: 'bored' });
    expect(extra.ok).toBe(false);
  });

  it('a member id is one NATS subject token', () => {
    expect(MEMBER_ID_PATTERN.test('member_42-x')).toBe(true);
    for (const bad of ['a.b', 'a*', 'a>', 'a b', '', 'x'.repeat(65)]) expect(memberIdSchema.safeParse(bad).success).toBe(false);
  });

  it('requires an offset in occurredAt', () => {
    expect(validateEvent({ ...base, type: 'unenroll', occurredAt: '2026-03-01T10:00:00' }).ok).toBe(false);
  });
});
