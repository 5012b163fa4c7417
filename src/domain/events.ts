import { z } from 'zod';

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

const currencyCodeSchema = z.string().regex(/^[A-Z]{3}$/, 'currency must be an ISO 4217 code such as EUR');
/** A points currency id from the program (points, miles, ...). */
const pointsCurrencyIdSchema = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'a points currency id such as points or miles');
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

export const activityEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('activity'),
    activity: z.enum(['review', 'referral', 'profile_completed', 'newsletter_signup', 'custom']),
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
export type LoyaltyEvent = z.infer<typeof loyaltyEventSchema>;
export type LoyaltyEventType = LoyaltyEvent['type'];

export type EventValidation =
  | { readonly ok: true; readonly event: LoyaltyEvent; readonly occurredAtMs: number }
  | { readonly ok: false; readonly reason: string };

/** Validates an already-decoded value; the reason names every bad field. */
export function validateEvent(value: unknown): EventValidation {
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

export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}
