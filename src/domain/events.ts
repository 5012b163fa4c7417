import { z } from 'zod';
import { daysFromCivil } from './time.js';

/**
 * The input contract: what producers publish on loyalty.tx.<memberId>.
 * docs/contract.md describes the same schema for people; keep them together.
 */

/** A member id is one NATS subject token: no dots, wildcards or spaces, bounded length. */
export const MEMBER_ID_LENGTH_MAX = 64;
export const MEMBER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const EVENT_ID_LENGTH_MAX = 128;
export const LINE_ITEMS_MAX = 200;

export const memberIdSchema = z
  .string()
  .min(1)
  .max(MEMBER_ID_LENGTH_MAX)
  .regex(MEMBER_ID_PATTERN, 'member id may hold only letters, digits, "_" and "-"');

const amountMinorSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const lineItemSchema = z
  .object({
    sku: z.string().min(1).max(64),
    category: z.string().min(1).max(64).optional(),
    quantity: z.number().int().min(1).max(100_000),
    unitPriceMinor: amountMinorSchema,
  })
  .strict()
  // The line's value must stay an exact integer: the earn rules multiply it further.
  .refine((line) => Number.isSafeInteger(line.quantity * line.unitPriceMinor), {
    message: 'quantity × unitPriceMinor exceeds the largest exact integer (2^53 - 1)',
    path: ['unitPriceMinor'],
  });

const eventBase = {
  /** The idempotency key, unique per member: a re-sent id changes nothing. */
  id: z.string().min(1).max(EVENT_ID_LENGTH_MAX),
  memberId: memberIdSchema,
  /** Event time, ISO 8601 with offset. Rules use this, never the wall clock. */
  occurredAt: z.iso.datetime({ offset: true }),
  channel: z.string().min(1).max(64).optional(),
  partner: z.string().min(1).max(64).optional(),
};

const CURRENCY_CODE_PATTERN = /^[A-Z]{3}$/;
const currencyCodeSchema = z.string().regex(CURRENCY_CODE_PATTERN, 'currency must be an ISO 4217 code such as EUR');
/** A points currency id from the program (points, miles, ...). */
const POINTS_CURRENCY_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const pointsCurrencyIdSchema = z.string().regex(POINTS_CURRENCY_ID_PATTERN, 'a points currency id such as points or miles');
const pointsSchema = z.number().int().min(1).max(1_000_000_000);
const referenceSchema = z.string().min(1).max(EVENT_ID_LENGTH_MAX);
const labelSchema = z.string().min(1).max(64);

export const purchaseEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('purchase'),
    /** The order a later return refers to; default: the event id. */
    orderId: referenceSchema.optional(),
    /** Amount paid in minor units (cents) of `currency`. */
    amountMinor: amountMinorSchema,
    currency: currencyCodeSchema,
    items: z.array(lineItemSchema).max(LINE_ITEMS_MAX).optional(),
  })
  .strict();

export const returnLineSchema = z
  .object({
    sku: z.string().min(1).max(64),
    quantity: z.number().int().min(1).max(100_000),
  })
  .strict();

/** A return of lines (sku + quantity), or a partial refund of an amount; never both. */
export const returnEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('return'),
    orderId: referenceSchema,
    lines: z.array(returnLineSchema).min(1).max(LINE_ITEMS_MAX).optional(),
    amountMinor: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
    /** When given, must be the original order's currency. */
    currency: currencyCodeSchema.optional(),
  })
  .strict()
  .refine((event) => (event.lines === undefined) !== (event.amountMinor === undefined), {
    message: 'a return has either lines or amountMinor (a partial refund), exactly one of them',
    path: ['lines'],
  });

export const redemptionEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('redemption'),
    rewardId: z.string().min(1).max(64),
    points: pointsSchema,
    currency: pointsCurrencyIdSchema,
    /** The order these points pay for, when redeemed at checkout: that purchase counts as an order with redeemed points. */
    orderId: referenceSchema.optional(),
  })
  .strict();

export const redemptionCancelEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('redemption_cancel'),
    /** The id of the redemption event to cancel. */
    redemptionId: referenceSchema,
  })
  .strict();

const activityKindSchema = z.enum(['review', 'referral', 'profile_completed', 'newsletter_signup', 'custom']);

export const activityEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('activity'),
    activity: activityKindSchema,
    customType: labelSchema.optional(),
  })
  .strict()
  .refine((event) => (event.activity === 'custom') === (event.customType !== undefined), {
    message: 'customType is required for activity "custom" and allowed only there',
    path: ['customType'],
  });

export const adjustmentEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('adjustment'),
    direction: z.enum(['credit', 'debit']),
    points: pointsSchema,
    currency: pointsCurrencyIdSchema,
    reason: z.string().min(1).max(256),
    operator: z.string().min(1).max(128),
    /** A credit that also counts toward tiers (a goodwill status correction). */
    qualifying: z.boolean().optional(),
  })
  .strict();

export const voucherRedeemEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('voucher_redeem'),
    code: z.string().min(1).max(64),
  })
  .strict();

const attributeKeySchema = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, 'attribute names are letters, digits, "_" and "-", starting with a letter')
  .refine((key) => key !== 'constructor', 'this attribute name is reserved');

export const enrollEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('enroll'),
    /** Merged into the member's attributes (personal data: erase removes them). */
    attributes: z
      .record(attributeKeySchema, z.string().max(256))
      .refine((record) => Object.keys(record).length <= 64, 'at most 64 attributes')
      .optional(),
    /** Replaces the member's segment list. */
    segments: z.array(labelSchema).max(64).optional(),
  })
  .strict();

/** A paid membership fee: starts, renews or switches a paid plan's term. */
export const membershipFeeEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('membership_fee'),
    planId: labelSchema,
    /** The fee paid, in minor units of `currency`: must be the plan's fee. */
    amountMinor: amountMinorSchema,
    currency: currencyCodeSchema,
  })
  .strict();

/** Ends the member's paid membership now (a refund, a cancellation with immediate effect). */
export const membershipCancelEventSchema = z.object({ ...eventBase, type: z.literal('membership_cancel') }).strict();

/** Points donated to a cause of the program's catalog. */
export const donationEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('donation'),
    causeId: labelSchema,
    points: pointsSchema,
    currency: pointsCurrencyIdSchema,
  })
  .strict();

export const unenrollEventSchema = z.object({ ...eventBase, type: z.literal('unenroll') }).strict();
export const eraseEventSchema = z.object({ ...eventBase, type: z.literal('erase') }).strict();

export const loyaltyEventSchema = z.discriminatedUnion('type', [
  purchaseEventSchema,
  returnEventSchema,
  redemptionEventSchema,
  redemptionCancelEventSchema,
  activityEventSchema,
  adjustmentEventSchema,
  voucherRedeemEventSchema,
  enrollEventSchema,
  unenrollEventSchema,
  eraseEventSchema,
  membershipFeeEventSchema,
  membershipCancelEventSchema,
  donationEventSchema,
]);

export type LineItem = z.infer<typeof lineItemSchema>;
export type PurchaseEvent = z.infer<typeof purchaseEventSchema>;
export type ReturnEvent = z.infer<typeof returnEventSchema>;
export type RedemptionEvent = z.infer<typeof redemptionEventSchema>;
export type RedemptionCancelEvent = z.infer<typeof redemptionCancelEventSchema>;
export type ActivityEvent = z.infer<typeof activityEventSchema>;
export type AdjustmentEvent = z.infer<typeof adjustmentEventSchema>;
export type VoucherRedeemEvent = z.infer<typeof voucherRedeemEventSchema>;
export type EnrollEvent = z.infer<typeof enrollEventSchema>;
export type UnenrollEvent = z.infer<typeof unenrollEventSchema>;
export type EraseEvent = z.infer<typeof eraseEventSchema>;
export type MembershipFeeEvent = z.infer<typeof membershipFeeEventSchema>;
export type MembershipCancelEvent = z.infer<typeof membershipCancelEventSchema>;
export type DonationEvent = z.infer<typeof donationEventSchema>;
export type LoyaltyEvent = z.infer<typeof loyaltyEventSchema>;
export type LoyaltyEventType = LoyaltyEvent['type'];

export type EventValidation =
  | { readonly ok: true; readonly event: LoyaltyEvent; readonly occurredAtMs: number }
  | { readonly ok: false; readonly reason: string };

/**
 * Validates an already-decoded value; the reason names every bad field.
 *
 * Purchases, nine events in ten, first try a hand-written check of the
 * contract (validatePurchaseFast). It accepts only what the schema accepts and
 * returns exactly what the schema returns; whenever it is not sure (any other
 * type, an unknown or undefined field, a value out of range, an object that
 * is not plain) it steps aside and the schema decides, so every refusal and
 * its reason come from the schema. A property test holds the two to the same
 * results.
 */
export function validateEvent(value: unknown): EventValidation {
  return validatePurchaseFast(value) ?? validateOtherFast(value) ?? validateEventBySchema(value);
}

/** validateEvent through the zod schema alone: the reference the fast path is tested against. */
export function validateEventBySchema(value: unknown): EventValidation {
  const parsed = loyaltyEventSchema.safeParse(value);
  if (!parsed.success) {
    return { ok: false, reason: formatIssues(parsed.error.issues) };
  }
  const occurredAtMs = Date.parse(parsed.data.occurredAt);
  if (!Number.isFinite(occurredAtMs)) {
    return { ok: false, reason: 'occurredAt: not a valid date' };
  }
  return { ok: true, event: parsed.data, occurredAtMs };
}

/** The schema's own ISO 8601 pattern for occurredAt (null, and no fast path, if zod ever stops exposing it). */
const OCCURRED_AT_PATTERN: RegExp | null = (() => {
  const pattern = (eventBase.occurredAt as unknown as { _zod?: { def?: { pattern?: unknown } } })._zod?.def?.pattern;
  return pattern instanceof RegExp && !pattern.global && !pattern.sticky ? pattern : null;
})();

/**
 * The fields the fast path knows how to check and copy. Written out rather
 * than taken from the schemas: a field added to a schema then makes the fast
 * path step aside for events carrying it instead of dropping it (a test
 * compares these lists with the schemas).
 */
export const PURCHASE_FAST_FIELDS: ReadonlySet<string> = new Set([
  'id',
  'memberId',
  'occurredAt',
  'channel',
  'partner',
  'type',
  'orderId',
  'amountMinor',
  'currency',
  'items',
]);
export const LINE_ITEM_FAST_FIELDS: ReadonlySet<string> = new Set(['sku', 'category', 'quantity', 'unitPriceMinor']);
const BASE_FAST_FIELDS = ['id', 'memberId', 'occurredAt', 'channel', 'partner', 'type'] as const;
export const RETURN_FAST_FIELDS: ReadonlySet<string> = new Set([...BASE_FAST_FIELDS, 'orderId', 'lines', 'amountMinor', 'currency']);
export const RETURN_LINE_FAST_FIELDS: ReadonlySet<string> = new Set(['sku', 'quantity']);
export const REDEMPTION_FAST_FIELDS: ReadonlySet<string> = new Set([...BASE_FAST_FIELDS, 'rewardId', 'points', 'currency', 'orderId']);
export const ACTIVITY_FAST_FIELDS: ReadonlySet<string> = new Set([...BASE_FAST_FIELDS, 'activity', 'customType']);
// The schema's own enum: the fast path cannot drift from it.
const ACTIVITY_KINDS: ReadonlySet<unknown> = new Set(activityKindSchema.options);

function isText(value: unknown, lengthMax: number): value is string {
  return typeof value === 'string' && value.length >= 1 && value.length <= lengthMax;
}

function isInteger(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;
}

/** A plain object (what JSON and msgpack decoding give) whose enumerable keys are all in `keys`, none of them undefined. */
function isPlainWithKeys(value: unknown, keys: ReadonlySet<string>): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) return false;
  const record = value as Record<string, unknown>;
  for (const key in record) {
    if (!keys.has(key) || record[key] === undefined) return false;
  }
  return true;
}

/**
 * The purchase contract checked by hand: the accepted event exactly as
 * loyaltyEventSchema would give it (fresh objects, fields in schema order), or
 * null when the value is not a purchase the check is sure about; then the
 * schema must decide. It never refuses anything itself.
 */
export function validatePurchaseFast(value: unknown): EventValidation | null {
  if (!isPlainWithKeys(value, PURCHASE_FAST_FIELDS) || value.type !== 'purchase') return null;
  const base = baseFast(value);
  if (base === null) return null;
  const orderId = value.orderId;
  const amountMinor = value.amountMinor;
  const currency = value.currency;
  const items = value.items;
  if (orderId !== undefined && !isText(orderId, EVENT_ID_LENGTH_MAX)) return null;
  if (!isInteger(amountMinor, 0, Number.MAX_SAFE_INTEGER)) return null;
  if (typeof currency !== 'string' || !CURRENCY_CODE_PATTERN.test(currency)) return null;
  let lines: LineItem[] | undefined;
  if (items !== undefined) {
    lines = lineItemsFast(items);
    if (lines === undefined) return null;
  }
  const event = base.event;
  if (orderId !== undefined) event.orderId = orderId;
  event.amountMinor = amountMinor;
  event.currency = currency;
  if (lines !== undefined) event.items = lines;
  return { ok: true, event: event as PurchaseEvent, occurredAtMs: base.occurredAtMs };
}

/**
 * The fields every event has, checked by hand: a fresh event object with
 * them in the schema's order (eventBase, then `type`), for the caller to add
 * its type's own fields to; null when the schema must decide.
 */
function baseFast(value: Record<string, unknown>): { event: Record<string, unknown>; occurredAtMs: number } | null {
  const id = value.id;
  const memberId = value.memberId;
  const occurredAt = value.occurredAt;
  const channel = value.channel;
  const partner = value.partner;
  if (!isText(id, EVENT_ID_LENGTH_MAX)) return null;
  if (!isText(memberId, MEMBER_ID_LENGTH_MAX) || !MEMBER_ID_PATTERN.test(memberId)) return null;
  if (OCCURRED_AT_PATTERN === null || typeof occurredAt !== 'string' || !OCCURRED_AT_PATTERN.test(occurredAt)) return null;
  if (channel !== undefined && !isText(channel, 64)) return null;
  if (partner !== undefined && !isText(partner, 64)) return null;
  const occurredAtMs = isoDateTimeMs(occurredAt);
  if (!Number.isFinite(occurredAtMs)) return null;
  const event: Record<string, unknown> = { id, memberId, occurredAt };
  if (channel !== undefined) event.channel = channel;
  if (partner !== undefined) event.partner = partner;
  event.type = value.type;
  return { event, occurredAtMs };
}

/**
 * Returns, redemptions and activities (the rest of a retail mix, one event
 * in ten) checked by hand like purchases: exactly the schema's result, or
 * null when the schema must decide (any other type, and every refusal).
 */
export function validateOtherFast(value: unknown): EventValidation | null {
  if (typeof value !== 'object' || value === null) return null;
  switch ((value as { type?: unknown }).type) {
    case 'return':
      return validateReturnFast(value);
    case 'redemption':
      return validateRedemptionFast(value);
    case 'activity':
      return validateActivityFast(value);
    default:
      return null;
  }
}

function validateReturnFast(value: unknown): EventValidation | null {
  if (!isPlainWithKeys(value, RETURN_FAST_FIELDS)) return null;
  const base = baseFast(value);
  if (base === null) return null;
  const orderId = value.orderId;
  const lines = value.lines;
  const amountMinor = value.amountMinor;
  const currency = value.currency;
  if (!isText(orderId, EVENT_ID_LENGTH_MAX)) return null;
  // The schema's refinement: lines or amountMinor, exactly one of them.
  if ((lines === undefined) === (amountMinor === undefined)) return null;
  let returned: { sku: string; quantity: number }[] | undefined;
  if (lines !== undefined) {
    if (!Array.isArray(lines) || lines.length < 1 || lines.length > LINE_ITEMS_MAX) return null;
    returned = new Array<{ sku: string; quantity: number }>(lines.length);
    for (let index = 0; index < lines.length; index++) {
      const line: unknown = lines[index];
      if (!isPlainWithKeys(line, RETURN_LINE_FAST_FIELDS)) return null;
      const sku = line.sku;
      const quantity = line.quantity;
      if (!isText(sku, 64) || !isInteger(quantity, 1, 100_000)) return null;
      returned[index] = { sku, quantity };
    }
  }
  if (amountMinor !== undefined && !isInteger(amountMinor, 1, Number.MAX_SAFE_INTEGER)) return null;
  if (currency !== undefined && (typeof currency !== 'string' || !CURRENCY_CODE_PATTERN.test(currency))) return null;
  const event = base.event;
  event.orderId = orderId;
  if (returned !== undefined) event.lines = returned;
  if (amountMinor !== undefined) event.amountMinor = amountMinor;
  if (currency !== undefined) event.currency = currency;
  return { ok: true, event: event as ReturnEvent, occurredAtMs: base.occurredAtMs };
}

function validateRedemptionFast(value: unknown): EventValidation | null {
  if (!isPlainWithKeys(value, REDEMPTION_FAST_FIELDS)) return null;
  const base = baseFast(value);
  if (base === null) return null;
  const rewardId = value.rewardId;
  const points = value.points;
  const currency = value.currency;
  const orderId = value.orderId;
  if (!isText(rewardId, 64) || !isInteger(points, 1, 1_000_000_000)) return null;
  if (typeof currency !== 'string' || !POINTS_CURRENCY_ID_PATTERN.test(currency)) return null;
  if (orderId !== undefined && !isText(orderId, EVENT_ID_LENGTH_MAX)) return null;
  const event = base.event;
  event.rewardId = rewardId;
  event.points = points;
  event.currency = currency;
  if (orderId !== undefined) event.orderId = orderId;
  return { ok: true, event: event as RedemptionEvent, occurredAtMs: base.occurredAtMs };
}

function validateActivityFast(value: unknown): EventValidation | null {
  if (!isPlainWithKeys(value, ACTIVITY_FAST_FIELDS)) return null;
  const base = baseFast(value);
  if (base === null) return null;
  const activity = value.activity;
  const customType = value.customType;
  if (!ACTIVITY_KINDS.has(activity)) return null;
  if (customType !== undefined && !isText(customType, 64)) return null;
  // The schema's refinement: customType for "custom" and only there.
  if ((activity === 'custom') !== (customType !== undefined)) return null;
  const event = base.event;
  event.activity = activity;
  if (customType !== undefined) event.customType = customType;
  return { ok: true, event: event as ActivityEvent, occurredAtMs: base.occurredAtMs };
}

/**
 * Date.parse of a string the occurredAt pattern accepted (4-digit year, a
 * real calendar date, 00-23:00-59:00-59, an optional fraction, Z or ±hh:mm),
 * computed from its digits: the same integer Date.parse gives, several times
 * faster. Fractions of other than three digits go to Date.parse itself.
 */
export function isoDateTimeMs(text: string): number {
  // Only for strings OCCURRED_AT_PATTERN matched: positions 0-18 are YYYY-MM-DDTHH:mm:ss.
  const length = text.length;
  let position = 19;
  let milliseconds = 0;
  if (text.charCodeAt(position) === 46 /* . */) {
    // Exactly three digits, as toISOString writes them; other precisions go to Date.parse.
    const exactlyThree = isDigit(text.charCodeAt(position + 2)) && isDigit(text.charCodeAt(position + 3)) && !isDigit(text.charCodeAt(position + 4));
    if (!exactlyThree) return Date.parse(text);
    milliseconds = digits(text, position + 1, 3);
    position += 4;
  }
  let offsetMinutes = 0;
  const zone = text.charCodeAt(position);
  if (zone === 90 /* Z */) {
    if (length !== position + 1) return Date.parse(text);
  } else if (zone === 43 /* + */ || zone === 45 /* - */) {
    if (length !== position + 6) return Date.parse(text);
    offsetMinutes = digits(text, position + 1, 2) * 60 + digits(text, position + 4, 2);
    if (zone === 45) offsetMinutes = -offsetMinutes;
  } else {
    return Date.parse(text);
  }
  const days = daysFromCivil(digits(text, 0, 4), digits(text, 5, 2), digits(text, 8, 2));
  const timeMs = ((digits(text, 11, 2) * 60 + digits(text, 14, 2)) * 60 + digits(text, 17, 2)) * 1000 + milliseconds;
  return days * 86_400_000 + timeMs - offsetMinutes * 60_000;
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/** The decimal number written by `count` ASCII digits at `start` (the pattern already checked they are digits). */
function digits(text: string, start: number, count: number): number {
  let value = 0;
  for (let index = start; index < start + count; index++) value = value * 10 + (text.charCodeAt(index) - 48);
  return value;
}

function lineItemsFast(items: unknown): LineItem[] | undefined {
  if (!Array.isArray(items) || items.length > LINE_ITEMS_MAX) return undefined;
  const lines = new Array<LineItem>(items.length);
  for (let index = 0; index < items.length; index++) {
    const item: unknown = items[index];
    if (!isPlainWithKeys(item, LINE_ITEM_FAST_FIELDS)) return undefined;
    const sku = item.sku;
    const category = item.category;
    const quantity = item.quantity;
    const unitPriceMinor = item.unitPriceMinor;
    if (!isText(sku, 64) || (category !== undefined && !isText(category, 64))) return undefined;
    if (!isInteger(quantity, 1, 100_000) || !isInteger(unitPriceMinor, 0, Number.MAX_SAFE_INTEGER)) return undefined;
    if (!Number.isSafeInteger(quantity * unitPriceMinor)) return undefined;
    lines[index] = category === undefined ? { sku, quantity, unitPriceMinor } : { sku, category, quantity, unitPriceMinor };
  }
  return lines;
}

export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}
