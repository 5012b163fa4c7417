import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addMonthsMs, dayStartMs, daysFromCivil, monthIndexOf, monthStartMs, periodStartMs } from '../../../src/domain/index.js';

/** The integer calendar arithmetic agrees with Date (used here only as the reference). */

const MINUTE_MS = 60_000;
const instant = fc.integer({ min: Date.UTC(1900, 0, 1), max: Date.UTC(2200, 0, 1) });
const offset = fc.integer({ min: -840, max: 840 });

function local(ms: number, offsetMinutes: number): Date {
  return new Date(ms + offsetMinutes * MINUTE_MS);
}

describe('calendar arithmetic', () => {
  it('month index, month start and day start match Date at any offset', () => {
    fc.assert(
      fc.property(instant, offset, (ms, offsetMinutes) => {
        const date = local(ms, offsetMinutes);
        const index = date.getUTCFullYear() * 12 + date.getUTCMonth();
        expect(monthIndexOf(ms, offsetMinutes)).toBe(index);
        expect(monthStartMs(index, offsetMinutes)).toBe(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1) - offsetMinutes * MINUTE_MS);
        expect(dayStartMs(ms, offsetMinutes)).toBe(
          Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()) - offsetMinutes * MINUTE_MS,
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('adding months keeps the local time and clamps the day to the month end', () => {
    fc.assert(
      fc.property(instant, offset, fc.integer({ min: -40, max: 120 }), (ms, offsetMinutes, months) => {
        const date = local(ms, offsetMinutes);
        const target = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + months, 1));
        const lastDay = new Date(Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0)).getUTCDate();
        const expected =
          Date.UTC(target.getUTCFullYear(), target.getUTCMonth(), Math.min(date.getUTCDate(), lastDay), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds(), date.getUTCMilliseconds()) -
          offsetMinutes * MINUTE_MS;
        expect(addMonthsMs(ms, months, offsetMinutes)).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('weeks start on Monday', () => {
    fc.assert(
      fc.property(instant, offset, (ms, offsetMinutes) => {
        const start = periodStartMs(ms, 'week', offsetMinutes);
        expect(local(start, offsetMinutes).getUTCDay()).toBe(1);
        expect(ms - start).toBeGreaterThanOrEqual(0);
        expect(ms - start).toBeLessThan(7 * 86_400_000);
      }),
    );
  });

  it('known dates', () => {
    expect(daysFromCivil(1970, 1, 1)).toBe(0);
    expect(daysFromCivil(2000, 3, 1)).toBe(11_017);
    expect(addMonthsMs(Date.parse('2026-01-31T10:00:00Z'), 1, 0)).toBe(Date.parse('2026-02-28T10:00:00Z'));
    expect(addMonthsMs(Date.parse('2024-02-29T10:00:00Z'), 12, 0)).toBe(Date.parse('2025-02-28T10:00:00Z'));
    expect(periodStartMs(Date.parse('2026-08-15T12:00:00Z'), 'quarter', 0)).toBe(Date.parse('2026-07-01T00:00:00Z'));
  });
});
