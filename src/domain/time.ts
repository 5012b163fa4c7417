import { assert } from './assert.js';

/**
 * Calendar arithmetic at a fixed UTC offset (the program's utcOffsetMinutes),
 * in integer arithmetic on day numbers (Howard Hinnant's civil-date
 * algorithms): no Date objects, so the hot path allocates nothing, and
 * nothing here reads the clock. A fixed offset keeps periods deterministic
 * without a time-zone database; a program that needs daylight-saving
 * boundaries picks the offset its accountants agree on.
 */

export const MINUTE_MS = 60_000;
export const DAY_MS = 86_400_000;

export type CalendarPeriod = 'day' | 'week' | 'month' | 'quarter' | 'year';

/** Days since 1970-01-01 of a proleptic Gregorian date (month 1-12). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

/**
 * The civil date of a day number (days since 1970-01-01), packed as
 * year × 10,000 + month × 100 + day so hot paths allocate nothing
 * (Howard Hinnant's civil_from_days).
 */
export function civilFromDays(days: number): number {
  const shifted = days + 719_468;
  const era = Math.floor(shifted / 146_097);
  const dayOfEra = shifted - era * 146_097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const monthPrime = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * monthPrime + 2) / 5) + 1;
  const month = monthPrime < 10 ? monthPrime + 3 : monthPrime - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  return year * 10_000 + month * 100 + day;
}

/** year × 12 + (month − 1) of a day number: the month index used for buckets and periods. */
function monthIndexOfDays(days: number): number {
  const civil = civilFromDays(days);
  const year = Math.floor(civil / 10_000);
  const month = Math.floor((civil - year * 10_000) / 100);
  return year * 12 + month - 1;
}

function localDays(ms: number, offsetMinutes: number): number {
  return Math.floor((ms + offsetMinutes * MINUTE_MS) / DAY_MS);
}

/** Start (UTC ms) of the local day holding `ms`. */
export function dayStartMs(ms: number, offsetMinutes: number): number {
  return localDays(ms, offsetMinutes) * DAY_MS - offsetMinutes * MINUTE_MS;
}

/** year × 12 + month (0-based) of the local date holding `ms`. */
export function monthIndexOf(ms: number, offsetMinutes: number): number {
  return monthIndexOfDays(localDays(ms, offsetMinutes));
}

/** Start (UTC ms) of the local month with the given month index. */
export function monthStartMs(monthIndex: number, offsetMinutes: number): number {
  const year = Math.floor(monthIndex / 12);
  return daysFromCivil(year, monthIndex - year * 12 + 1, 1) * DAY_MS - offsetMinutes * MINUTE_MS;
}

/** The same local time `months` later; the day is clamped to the target month's last day. */
export function addMonthsMs(ms: number, months: number, offsetMinutes: number): number {
  assert(Number.isInteger(months), 'months must be an integer');
  const shift = offsetMinutes * MINUTE_MS;
  const days = Math.floor((ms + shift) / DAY_MS);
  const timeOfDayMs = ms + shift - days * DAY_MS;
  const monthIndex = monthIndexOfDays(days);
  const dayOfMonth = days - daysFromCivil(Math.floor(monthIndex / 12), (monthIndex % 12) + 1, 1) + 1;
  const target = monthIndex + months;
  const year = Math.floor(target / 12);
  const month = target - year * 12 + 1;
  const day = Math.min(dayOfMonth, daysInMonth(year, month));
  return daysFromCivil(year, month, day) * DAY_MS + timeOfDayMs - shift;
}

/** Start (UTC ms) of the local period holding `ms`; weeks start on Monday. */
export function periodStartMs(ms: number, period: CalendarPeriod, offsetMinutes: number): number {
  switch (period) {
    case 'day':
      return dayStartMs(ms, offsetMinutes);
    case 'week': {
      const days = localDays(ms, offsetMinutes);
      // 1970-01-01 was a Thursday: (days + 3) mod 7 counts days since Monday.
      const sinceMonday = (((days + 3) % 7) + 7) % 7;
      return (days - sinceMonday) * DAY_MS - offsetMinutes * MINUTE_MS;
    }
    case 'month':
    case 'quarter':
    case 'year': {
      const size = monthsInPeriod(period);
      const index = monthIndexOf(ms, offsetMinutes);
      return monthStartMs(Math.floor(index / size) * size, offsetMinutes);
    }
  }
}

/** Start of the period `count` periods after the one starting at `startMs` (month-like periods only). */
export function periodsAfterMs(startMs: number, period: 'month' | 'quarter' | 'year', count: number, offsetMinutes: number): number {
  assert(Number.isInteger(count), 'count must be an integer');
  return monthStartMs(monthIndexOf(startMs, offsetMinutes) + count * monthsInPeriod(period), offsetMinutes);
}

export function monthsInPeriod(period: 'month' | 'quarter' | 'year'): number {
  return period === 'month' ? 1 : period === 'quarter' ? 3 : 12;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}
