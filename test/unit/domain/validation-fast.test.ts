import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  isoDateTimeMs,
  LINE_ITEM_FAST_FIELDS,
  lineItemSchema,
  PURCHASE_FAST_FIELDS,
  purchaseEventSchema,
  validateEvent,
  validateEventBySchema,
  validatePurchaseFast,
  type EventValidation,
} from '../../../src/domain/index.js';
import {
  activityEventSchema,
  ACTIVITY_FAST_FIELDS,
  redemptionEventSchema,
  REDEMPTION_FAST_FIELDS,
  returnEventSchema,
  returnLineSchema,
  RETURN_FAST_FIELDS,
  RETURN_LINE_FAST_FIELDS,
  validateOtherFast,
} from '../../../src/domain/events.js';

/**
 * validateEvent takes a hand-written fast path for purchases and falls back
 * to the zod schema whenever the fast path is not sure. These properties hold
 * the fast path to the schema: whatever it accepts, the schema accepts with
 * the very same result (fields, their order, -0 and all), and validateEvent
 * as a whole answers exactly what the schema alone answers, refusals and their
 * reasons included.
 */

/** Deep equality that also compares key order, prototypes and Object.is on primitives (-0 is not 0). */
function sameValue(left: unknown, right: unknown, path = '$'): string | null {
  if (typeof left !== 'object' || left === null || typeof right !== 'object' || right === null) {
    return Object.is(left, right) ? null : `${path}: ${String(left)} vs ${String(right)}`;
  }
  if (Object.getPrototypeOf(left) !== Object.getPrototypeOf(right)) return `${path}: prototypes differ`;
  if (Array.isArray(left) !== Array.isArray(right)) return `${path}: array vs object`;
  const leftKeys = Reflect.ownKeys(left);
  const rightKeys = Reflect.ownKeys(right);
  if (leftKeys.length !== rightKeys.length || leftKeys.some((key, index) => key !== rightKeys[index])) {
    return `${path}: keys ${leftKeys.map(String).join(',')} vs ${rightKeys.map(String).join(',')}`;
  }
  for (const key of leftKeys) {
    const difference = sameValue((left as Record<PropertyKey, unknown>)[key], (right as Record<PropertyKey, unknown>)[key], `${path}.${String(key)}`);
    if (difference !== null) return difference;
  }
  return null;
}

function expectSame(actual: EventValidation, expected: EventValidation): void {
  const difference = sameValue(actual, expected);
  if (difference !== null) throw new Error(`validations differ at ${difference}\nactual:   ${JSON.stringify(actual)}\nexpected: ${JSON.stringify(expected)}`);
}

const ABSENT = Symbol('absent');

const nonStrings = fc.constantFrom<unknown>(null, undefined, 0, 1, true, {}, [], ['a'], { toString: 'x' });
const text = (lengthMax: number) =>
  fc.oneof(
    { weight: 40, arbitrary: fc.string({ minLength: 1, maxLength: 12 }) },
    { weight: 1, arbitrary: fc.constant('') },
    { weight: 1, arbitrary: fc.constantFrom('x'.repeat(lengthMax), 'x'.repeat(lengthMax + 1)) },
    { weight: 1, arbitrary: nonStrings },
  );
const memberIds = fc.oneof(
  { weight: 30, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/) },
  { weight: 1, arbitrary: fc.constantFrom('m.1', 'm 1', 'm*', 'mü', 'a'.repeat(64), 'a'.repeat(65), '', 'm1\n') },
  { weight: 1, arbitrary: nonStrings },
);
const datetimes = fc.oneof(
  { weight: 30, arbitrary: fc.integer({ min: Date.parse('1990-01-01T00:00:00Z'), max: Date.parse('2100-01-01T00:00:00Z') }).map((ms) => new Date(ms).toISOString()) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '2026-11-23T10:00:00+01:00',
      '2026-11-23T10:00:00.5-05:30',
      '2026-11-23T10:00:00',
      '2026-11-23',
      '2026-11-23T10:00Z',
      '2026-11-23 10:00:00Z',
      '2026-11-23T10:00:00z',
      '2026-02-30T10:00:00Z',
      '2024-02-29T00:00:00Z',
      '2023-02-29T00:00:00Z',
      '2026-11-23T24:00:00Z',
      '2026-11-23T23:59:59+23:59',
      '2026-11-23T23:59:59+24:00',
      '0000-01-01T00:00:00Z',
      '9999-12-31T23:59:59.999999999Z',
      '+02026-11-23T10:00:00Z',
      '2026-11-23T10:00:00.1Z',
      '2026-11-23T10:00:00.12+01:00',
      '2026-11-23T10:00:00.1234-01:00',
      '2026-11-23T10:00:00.123456789012Z',
      '1969-12-31T23:59:59.999Z',
      '1970-01-01T00:00:00-00:00',
    ),
  },
  { weight: 1, arbitrary: nonStrings },
);
const integers = (min: number, max: number) =>
  fc.oneof(
    { weight: 30, arbitrary: fc.integer({ min, max: Math.min(max, 2_000_000_000) }) },
    {
      weight: 2,
      arbitrary: fc.constantFrom<unknown>(-0, min - 1, max, max + 1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER, 2 ** 53, 1e21, '5', null, undefined),
    },
  );
const currencies = fc.oneof(
  { weight: 30, arbitrary: fc.constantFrom<unknown>('EUR', 'USD') },
  { weight: 2, arbitrary: fc.constantFrom<unknown>('eur', 'EU', 'EURO', 'ÉUR', 'EUR\n', 5, null, undefined) },
);

/** A line item, sometimes missing a field, with a stray field, or an undefined one. */
const lineItem = fc
  .record({
    sku: fc.oneof({ weight: 40, arbitrary: text(64) }, { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) }),
    category: fc.oneof({ weight: 3, arbitrary: text(64) }, { weight: 2, arbitrary: fc.constant<unknown>(ABSENT) }),
    quantity: fc.oneof({ weight: 40, arbitrary: integers(1, 100_000) }, { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) }),
    unitPriceMinor: fc.oneof(
      { weight: 40, arbitrary: integers(0, Number.MAX_SAFE_INTEGER) },
      { weight: 1, arbitrary: fc.constantFrom<unknown>(Math.floor(Number.MAX_SAFE_INTEGER / 2), ABSENT) },
    ),
    extra: fc.oneof({ weight: 60, arbitrary: fc.constant<unknown>(ABSENT) }, { weight: 1, arbitrary: fc.constantFrom<unknown>(1, undefined, 'x') }),
  })
  .chain((fields) => fc.shuffledSubarray(Object.keys(fields), { minLength: Object.keys(fields).length }).map((order) => build(fields, order)));

const itemsArbitrary = fc.oneof(
  { weight: 20, arbitrary: fc.array(lineItem, { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, {}, 'items', [undefined], [null], new Array(2)) },
  { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) },
);

function build(fields: Record<string, unknown>, order: readonly string[]): Record<string, unknown> {
  const value: Record<string, unknown> = {};
  for (const key of order) if (fields[key] !== ABSENT) value[key] = fields[key];
  return value;
}

/** Mostly well-formed purchases, each field sometimes wrong, missing, undefined or joined by a stray one. */
const purchaseLike = fc
  .record({
    id: fc.oneof({ weight: 40, arbitrary: text(128) }, { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) }),
    memberId: fc.oneof({ weight: 40, arbitrary: memberIds }, { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) }),
    type: fc.oneof({ weight: 40, arbitrary: fc.constant<unknown>('purchase') }, { weight: 1, arbitrary: fc.constantFrom<unknown>('return', 'Purchase', undefined, ABSENT) }),
    occurredAt: fc.oneof({ weight: 40, arbitrary: datetimes }, { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) }),
    orderId: fc.oneof({ weight: 2, arbitrary: text(128) }, { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) }),
    amountMinor: fc.oneof({ weight: 40, arbitrary: integers(0, Number.MAX_SAFE_INTEGER) }, { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) }),
    currency: fc.oneof({ weight: 40, arbitrary: currencies }, { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) }),
    channel: fc.oneof({ weight: 2, arbitrary: text(64) }, { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) }),
    partner: fc.oneof({ weight: 1, arbitrary: text(64) }, { weight: 3, arbitrary: fc.constant<unknown>(ABSENT) }),
    items: itemsArbitrary,
    extra: fc.oneof({ weight: 60, arbitrary: fc.constant<unknown>(ABSENT) }, { weight: 1, arbitrary: fc.constantFrom<unknown>(1, undefined, 'x') }),
  })
  .chain((fields) => fc.shuffledSubarray(Object.keys(fields), { minLength: Object.keys(fields).length }).map((order) => build(fields, order)));

/** Valid purchases shaped like the bench's, as JSON and msgpack decoding give them. */
const validPurchase = fc
  .record({
    id: fc.stringMatching(/^[a-z0-9-]{1,40}$/),
    memberId: fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
    occurredAt: fc.integer({ min: Date.parse('2000-01-01T00:00:00Z'), max: Date.parse('2099-01-01T00:00:00Z') }).map((ms) => new Date(ms).toISOString()),
    orderId: fc.option(fc.stringMatching(/^[a-z0-9-]{1,40}$/), { nil: undefined }),
    amountMinor: fc.integer({ min: 0, max: 10_000_000 }),
    channel: fc.option(fc.constantFrom('web', 'app', 'store'), { nil: undefined }),
    items: fc.option(
      fc.array(
        fc.record(
          { sku: fc.stringMatching(/^[A-Z]{3}-[0-9]{1,5}$/), category: fc.constantFrom('shoes', 'grocery'), quantity: fc.integer({ min: 1, max: 4 }), unitPriceMinor: fc.integer({ min: 0, max: 200_000 }) },
          { requiredKeys: ['sku', 'quantity', 'unitPriceMinor'] },
        ),
        { maxLength: 8 },
      ),
      { nil: undefined },
    ),
    encoding: fc.constantFrom('json', 'msgpack'),
  })
  .map(({ encoding, ...fields }) => {
    const event = JSON.parse(JSON.stringify({ ...fields, type: 'purchase', currency: 'EUR' })) as unknown;
    return encoding === 'json' ? event : unpack(pack(event));
  });

const pad = (value: number, width: number) => String(value).padStart(width, '0');
/** Strings of the occurredAt pattern: any year, a real date, any time, fractions of 0 to 12 digits, Z or an offset. */
const patternDatetimes = fc
  .record({
    year: fc.oneof(fc.integer({ min: 0, max: 9999 }), fc.integer({ min: 1960, max: 2100 })),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 31 }),
    hour: fc.integer({ min: 0, max: 23 }),
    minute: fc.integer({ min: 0, max: 59 }),
    second: fc.integer({ min: 0, max: 59 }),
    fraction: fc.oneof(fc.constant(''), fc.stringMatching(/^[0-9]{3}$/), fc.stringMatching(/^[0-9]{1,12}$/)),
    zone: fc.oneof(fc.constant('Z'), fc.record({ sign: fc.constantFrom('+', '-'), hours: fc.integer({ min: 0, max: 23 }), minutes: fc.integer({ min: 0, max: 59 }) }).map(({ sign, hours, minutes }) => `${sign}${pad(hours, 2)}:${pad(minutes, 2)}`)),
  })
  .map(({ year, month, day, hour, minute, second, fraction, zone }) => {
    const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
    const last = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
    const date = `${pad(year, 4)}-${pad(month, 2)}-${pad(Math.min(day, last), 2)}`;
    return `${date}T${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}${fraction === '' ? '' : `.${fraction}`}${zone}`;
  });

describe('validateEvent: the purchase fast path', () => {
  it('computes occurredAt exactly as Date.parse does, for every string of the pattern', () => {
    const pattern = (purchaseEventSchema.shape.occurredAt as unknown as { _zod: { def: { pattern: RegExp } } })._zod.def.pattern;
    fc.assert(
      fc.property(fc.oneof(patternDatetimes, fc.integer({ min: -62_167_219_200_000, max: 253_402_300_799_999 }).map((ms) => new Date(ms).toISOString())), (text) => {
        expect(pattern.test(text)).toBe(true);
        expect(Object.is(isoDateTimeMs(text), Date.parse(text))).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });

  it('accepts only what the schema accepts, with the very same result, and validateEvent answers as the schema does', () => {
    let fast = 0;
    fc.assert(
      fc.property(purchaseLike, (value) => {
        const expected = validateEventBySchema(value);
        const quick = validatePurchaseFast(value);
        if (quick !== null) {
          fast += 1;
          expect(expected.ok).toBe(true);
          expectSame(quick, expected);
        }
        expectSame(validateEvent(value), expected);
      }),
      { numRuns: 5_000 },
    );
    // The mix must exercise both paths.
    expect(fast).toBeGreaterThan(500);
    expect(fast).toBeLessThan(4_500);
  });

  it('takes every valid purchase as decoded from JSON or msgpack, and gives what the schema gives', () => {
    fc.assert(
      fc.property(validPurchase, (value) => {
        const quick = validatePurchaseFast(value);
        expect(quick).not.toBeNull();
        expectSame(quick!, validateEventBySchema(value));
      }),
      { numRuns: 2_000 },
    );
  });

  it('knows exactly the fields of the purchase and line item schemas', () => {
    expect([...PURCHASE_FAST_FIELDS]).toEqual(Object.keys(purchaseEventSchema.shape));
    expect([...LINE_ITEM_FAST_FIELDS]).toEqual(Object.keys(lineItemSchema.shape));
  });

  it('steps aside for other types, non-plain objects, undefined fields and own __proto__ keys', () => {
    const base = { id: 'e1', memberId: 'm1', type: 'purchase', occurredAt: '2026-11-23T10:00:00Z', amountMinor: 100, currency: 'EUR' };
    expect(validatePurchaseFast(base)).not.toBeNull();
    const cases: unknown[] = [
      { ...base, type: 'return' },
      Object.assign(Object.create(null) as object, base),
      Object.assign(new (class Event {})(), base),
      { ...base, channel: undefined },
      { ...base, items: [{ sku: 'A', quantity: 1, unitPriceMinor: 1, category: undefined }] },
      JSON.parse('{"__proto__": 1, "id": "e1", "memberId": "m1", "type": "purchase", "occurredAt": "2026-11-23T10:00:00Z", "amountMinor": 100, "currency": "EUR"}'),
      { ...base, items: [{ sku: 'A', quantity: 3, unitPriceMinor: Math.floor(Number.MAX_SAFE_INTEGER / 2) }] },
      { ...base, occurredAt: '2026-02-30T10:00:00Z' },
      [base],
      null,
      'purchase',
    ];
    for (const value of cases) {
      expect(validatePurchaseFast(value)).toBeNull();
      expectSame(validateEvent(value), validateEventBySchema(value));
    }
  });
});

/** A field that is mostly `value`, sometimes absent. */
const mostly = (value: fc.Arbitrary<unknown>, absentWeight = 1) =>
  fc.oneof({ weight: 40, arbitrary: value }, { weight: absentWeight, arbitrary: fc.constant<unknown>(ABSENT) });
const shuffled = (fields: fc.Arbitrary<Record<string, unknown>>) =>
  fields.chain((record) => fc.shuffledSubarray(Object.keys(record), { minLength: Object.keys(record).length }).map((order) => build(record, order)));
const baseFields = (type: string) => ({
  id: mostly(text(128)),
  memberId: mostly(memberIds),
  type: fc.oneof({ weight: 40, arbitrary: fc.constant<unknown>(type) }, { weight: 1, arbitrary: fc.constantFrom<unknown>('purchase', type.toUpperCase(), undefined, ABSENT) }),
  occurredAt: mostly(datetimes),
  channel: fc.oneof({ weight: 2, arbitrary: text(64) }, { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) }),
  partner: fc.oneof({ weight: 1, arbitrary: text(64) }, { weight: 3, arbitrary: fc.constant<unknown>(ABSENT) }),
  extra: fc.oneof({ weight: 60, arbitrary: fc.constant<unknown>(ABSENT) }, { weight: 1, arbitrary: fc.constantFrom<unknown>(1, undefined, 'x') }),
});

const returnLine = shuffled(
  fc.record({
    sku: mostly(text(64)),
    quantity: mostly(integers(1, 100_000)),
    extra: fc.oneof({ weight: 60, arbitrary: fc.constant<unknown>(ABSENT) }, { weight: 1, arbitrary: fc.constantFrom<unknown>(1, undefined) }),
  }),
);
const returnLike = shuffled(
  fc.record({
    ...baseFields('return'),
    orderId: mostly(text(128)),
    lines: fc.oneof(
      { weight: 10, arbitrary: fc.array(returnLine, { maxLength: 4 }) },
      { weight: 1, arbitrary: fc.constantFrom<unknown>(null, {}, [undefined], new Array(2)) },
      { weight: 10, arbitrary: fc.constant<unknown>(ABSENT) },
    ),
    amountMinor: fc.oneof({ weight: 10, arbitrary: integers(1, Number.MAX_SAFE_INTEGER) }, { weight: 10, arbitrary: fc.constant<unknown>(ABSENT) }),
    currency: fc.oneof({ weight: 3, arbitrary: currencies }, { weight: 3, arbitrary: fc.constant<unknown>(ABSENT) }),
  }),
);
const redemptionLike = shuffled(
  fc.record({
    ...baseFields('redemption'),
    rewardId: mostly(text(64)),
    points: mostly(integers(1, 1_000_000_000)),
    currency: mostly(fc.oneof({ weight: 30, arbitrary: fc.constantFrom<unknown>('points', 'miles', 'p-1') }, { weight: 2, arbitrary: fc.constantFrom<unknown>('Points', '-x', 'a'.repeat(65), '', 5, null) })),
    orderId: fc.oneof({ weight: 1, arbitrary: text(128) }, { weight: 2, arbitrary: fc.constant<unknown>(ABSENT) }),
  }),
);
const activityLike = shuffled(
  fc.record({
    ...baseFields('activity'),
    activity: mostly(fc.oneof({ weight: 30, arbitrary: fc.constantFrom<unknown>('review', 'referral', 'profile_completed', 'newsletter_signup', 'custom') }, { weight: 2, arbitrary: fc.constantFrom<unknown>('Review', 'other', '', 1, null) })),
    customType: fc.oneof({ weight: 1, arbitrary: text(64) }, { weight: 2, arbitrary: fc.constant<unknown>(ABSENT) }),
  }),
);

describe('validateEvent: the return, redemption and activity fast paths', () => {
  for (const [name, arbitrary] of [
    ['return', returnLike],
    ['redemption', redemptionLike],
    ['activity', activityLike],
  ] as const) {
    it(`${name}: accepts only what the schema accepts, with the very same result, and validateEvent answers as the schema does`, () => {
      let fast = 0;
      fc.assert(
        fc.property(arbitrary, (value) => {
          const expected = validateEventBySchema(value);
          const quick = validateOtherFast(value);
          if (quick !== null) {
            fast += 1;
            expect(expected.ok).toBe(true);
            expectSame(quick, expected);
          }
          expectSame(validateEvent(value), expected);
        }),
        { numRuns: 4_000 },
      );
      // The mix must exercise both paths.
      expect(fast).toBeGreaterThan(300);
      expect(fast).toBeLessThan(3_800);
    });
  }

  it('takes the bench generator\'s valid events of these types, and gives what the schema gives', () => {
    const events: unknown[] = [
      { id: 'r1', memberId: 'm1', occurredAt: '2026-11-23T10:00:00.000Z', type: 'return', orderId: 'o1', lines: [{ sku: 'A-1', quantity: 1 }] },
      { id: 'r2', memberId: 'm1', occurredAt: '2026-11-23T10:00:00.000Z', type: 'return', orderId: 'o1', amountMinor: 500, currency: 'EUR' },
      { id: 'd1', memberId: 'm1', occurredAt: '2026-11-23T10:00:00.000Z', channel: 'app', type: 'redemption', rewardId: 'coffee', points: 500, currency: 'points' },
      { id: 'a1', memberId: 'm1', occurredAt: '2026-11-23T10:00:00.000Z', type: 'activity', activity: 'review' },
      { id: 'a2', memberId: 'm1', occurredAt: '2026-11-23T10:00:00.000Z', type: 'activity', activity: 'custom', customType: 'quiz' },
    ];
    for (const event of events) {
      for (const value of [JSON.parse(JSON.stringify(event)) as unknown, unpack(pack(event)) as unknown]) {
        const quick = validateOtherFast(value);
        expect(quick).not.toBeNull();
        expectSame(quick!, validateEventBySchema(value));
      }
    }
  });

  it('knows exactly the fields of the return, return line, redemption and activity schemas', () => {
    expect([...RETURN_FAST_FIELDS]).toEqual(Object.keys(returnEventSchema.shape));
    expect([...RETURN_LINE_FAST_FIELDS]).toEqual(Object.keys(returnLineSchema.shape));
    expect([...REDEMPTION_FAST_FIELDS]).toEqual(Object.keys(redemptionEventSchema.shape));
    expect([...ACTIVITY_FAST_FIELDS]).toEqual(Object.keys(activityEventSchema.shape));
  });

  it('steps aside for the refinements, other types and undefined fields', () => {
    const base = { id: 'e1', memberId: 'm1', occurredAt: '2026-11-23T10:00:00Z' };
    const cases: unknown[] = [
      { ...base, type: 'return', orderId: 'o1' },
      { ...base, type: 'return', orderId: 'o1', amountMinor: 5, lines: [{ sku: 'A', quantity: 1 }] },
      { ...base, type: 'return', orderId: 'o1', lines: [] },
      { ...base, type: 'return', orderId: 'o1', amountMinor: 0 },
      { ...base, type: 'activity', activity: 'custom' },
      { ...base, type: 'activity', activity: 'review', customType: 'x' },
      { ...base, type: 'redemption', rewardId: 'r', points: 1, currency: 'points', orderId: undefined },
      { ...base, type: 'adjustment' },
      { ...base, type: 'purchase', amountMinor: 1, currency: 'EUR' },
    ];
    for (const value of cases) {
      expect(validateOtherFast(value)).toBeNull();
      expectSame(validateEvent(value), validateEventBySchema(value));
    }
  });
});
