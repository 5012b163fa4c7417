import { describe, expect, it } from 'vitest';
import { validateEvent, validateEventBySchema } from '../../../src/domain/index.js';

/** Issue 16: the new event types go through the same validation as every other (the schema; no fast path). */

const base = { id: 'e1', memberId: 'carol', occurredAt: '2026-10-06T10:00:00Z' };

describe('paid membership and donation events', () => {
  it('accepts the contract examples, and a redemption naming the order it pays for', () => {
    for (const event of [
      { ...base, type: 'membership_fee', planId: 'premium-yearly', amountMinor: 3999, currency: 'EUR' },
      { ...base, type: 'membership_cancel' },
      { ...base, type: 'donation', causeId: 'literacy', points: 100, currency: 'points' },
      { ...base, type: 'redemption', rewardId: 'reward-5', points: 500, currency: 'points', orderId: 'o-1' },
    ]) {
      const result = validateEvent(event);
      expect(result, JSON.stringify(event)).toMatchObject({ ok: true, event });
      expect(validateEventBySchema(event)).toEqual(result);
    }
  });

  it('names every bad field, and refuses unknown ones', () => {
    const fee = validateEvent({ ...base, type: 'membership_fee', planId: '', amountMinor: 1.5, currency: 'eur' });
    expect(fee.ok).toBe(false);
    expect(!fee.ok && fee.reason.split('; ').map((part) => part.split(':')[0])).toEqual(['planId', 'amountMinor', 'currency']);
    const donation = validateEvent({ ...base, type: 'donation', causeId: 'trees', points: 0, currency: 'EUR' });
    expect(!donation.ok && donation.reason.split('; ').map((part) => part.split(':')[0])).toEqual(['points', 'currency']);
    expect(validateEvent({ ...base, type: 'membership_cancel', planId: 'x' })).toMatchObject({ ok: false });
    expect(validateEvent({ ...base, type: 'donation', causeId: 'trees', points: 5, currency: 'points', note: 'hi' })).toMatchObject({ ok: false });
    expect(validateEvent({ ...base, type: 'redemption', rewardId: 'r', points: 5, currency: 'points', orderId: '' })).toMatchObject({ ok: false });
  });
});
