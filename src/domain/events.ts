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
  .strict();

const eventBase = {
  /** The idempotency key, unique per member: a re-sent id changes nothing. */
  id: z.string().min(1).max(EVENT_ID_LENGTH_MAX),
  memberId: memberIdSchema,
  /** Event time, ISO 8601 with offset. Rules use this, never the wall clock. */
  occurredAt: z.iso.datetime({ offset: true }),
  channel: z.string().min(1).max(64).optional(),
  partner: z.string().min(1).max(64).optional(),
};

export const purchaseEventSchema = z
  .object({
    ...eventBase,
    type: z.literal('purchase'),
    /** Amount paid in minor units (cents) of `currency`. */
    amountMinor: amountMinorSchema,
    currency: z.string().regex(/^[A-Z]{3}$/, 'currency must be an ISO 4217 code such as EUR'),
    items: z.array(lineItemSchema).max(LINE_ITEMS_MAX).optional(),
  })
  .strict();

export const loyaltyEventSchema = z.discriminatedUnion('type', [purchaseEventSchema]);

export type LineItem = z.infer<typeof lineItemSchema>;
export type PurchaseEvent = z.infer<typeof purchaseEventSchema>;
export type LoyaltyEvent = z.infer<typeof loyaltyEventSchema>;

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
