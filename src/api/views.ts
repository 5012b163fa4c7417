import { z } from 'zod';
import type { Program } from '../domain/program.js';
import type { LedgerEntry } from '../domain/state.js';
import type { WalletView } from '../domain/wallet.js';
import { serializerOf, serializeWithSchema } from './schema.js';

/**
 * What the API shows, shared by HTTP and the NATS services: the domain's
 * millisecond times become ISO 8601 strings (UTC), and the wallet adds points
 * expiring per coming calendar month.
 */

export const EXPIRY_PERIODS = 3;

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : iso(ms));

/** `YYYY-MM` of a time at a fixed UTC offset. */
export function monthOf(ms: number, utcOffsetMinutes: number): { key: string; year: number; month: number } {
  const shifted = new Date(ms + utcOffsetMinutes * 60_000);
  const year = shifted.getUTCFullYear();
  const month = shifted.getUTCMonth();
  return { key: `${year}-${String(month + 1).padStart(2, '0')}`, year, month };
}

/** Points expiring in each of the next `periods` calendar months (the current one first). */
export function expiringByMonth(
  expiring: readonly { readonly expiresAtMs: number; readonly points: number }[],
  nowMs: number,
  utcOffsetMinutes: number,
  periods = EXPIRY_PERIODS,
): { period: string; points: number }[] {
  const start = monthOf(nowMs, utcOffsetMinutes);
  const result: { period: string; points: number }[] = [];
  const index = new Map<string, number>();
  for (let offset = 0; offset < periods; offset++) {
    const date = new Date(Date.UTC(start.year, start.month + offset, 1));
    const key = `${date.getUTCFullYear()}-${String(date.getUTCMonth() + 1).padStart(2, '0')}`;
    index.set(key, result.length);
    result.push({ period: key, points: 0 });
  }
  for (const item of expiring) {
    if (item.expiresAtMs < nowMs) continue;
    const slot = index.get(monthOf(item.expiresAtMs, utcOffsetMinutes).key);
    if (slot !== undefined) result[slot]!.points += item.points;
  }
  return result;
}

export function walletResponse(view: WalletView, program: Program) {
  const offset = program.utcOffsetMinutes ?? 0;
  return {
    memberId: view.memberId,
    status: view.status,
    asOf: iso(view.asOfMs),
    tier: {
      id: view.tier.id,
      name: view.tier.name,
      since: iso(view.tier.sinceMs),
      basis: view.tier.basis,
      measure: view.tier.measure,
      periodEndsAt: isoOrNull(view.tier.periodEndsAtMs),
      next: view.tier.next,
      keep: { threshold: view.tier.keep.threshold, remaining: view.tier.keep.remaining, by: isoOrNull(view.tier.keep.byMs) },
      grace: view.tier.grace === null ? null : { until: iso(view.tier.grace.untilMs), targetTierId: view.tier.grace.targetTierId },
    },
    currencies: view.currencies.map((currency) => ({
      currency: currency.currency,
      spendable: currency.spendable,
      pending: currency.pending,
      qualifying: currency.qualifying,
      debt: currency.debt,
      pendingReleases: currency.pendingReleases.map((release) => ({ releaseAt: iso(release.releaseAtMs), points: release.points })),
      expiring: currency.expiring.map((item) => ({ expiresAt: iso(item.expiresAtMs), points: item.points })),
      expiringByMonth: expiringByMonth(currency.expiring, view.asOfMs, offset),
      inactivityDeadline: isoOrNull(currency.inactivityDeadlineMs),
    })),
    vouchers: view.vouchers.map((voucher) => ({
      code: voucher.code,
      benefitId: voucher.benefitId,
      kind: voucher.kind,
      issuedAt: iso(voucher.issuedAtMs),
      expiresAt: iso(voucher.expiresAtMs),
    })),
  };
}

export type WalletResponse = ReturnType<typeof walletResponse>;

const dateTime = z.string().meta({ description: 'ISO 8601, UTC' });

export const walletResponseSchema = z.object({
  memberId: z.string(),
  status: z.enum(['active', 'unenrolled', 'erased']),
  asOf: dateTime,
  tier: z.object({
    id: z.string(),
    name: z.string(),
    since: dateTime,
    basis: z.enum(['points', 'spend']),
    measure: z.number().int().meta({ description: 'qualifying points (or spend in minor units) in the current window' }),
    periodEndsAt: dateTime.nullable(),
    next: z.object({ id: z.string(), name: z.string(), threshold: z.number(), remaining: z.number() }).nullable(),
    keep: z.object({ threshold: z.number(), remaining: z.number(), by: dateTime.nullable() }).meta({ description: 'what keeps the current tier at the next review' }),
    grace: z.object({ until: dateTime, targetTierId: z.string() }).nullable(),
  }),
  currencies: z.array(
    z.object({
      currency: z.string(),
      spendable: z.number().int(),
      pending: z.number().int(),
      qualifying: z.number().int(),
      debt: z.number().int(),
      pendingReleases: z.array(z.object({ releaseAt: dateTime, points: z.number().int() })),
      expiring: z.array(z.object({ expiresAt: dateTime, points: z.number().int() })),
      expiringByMonth: z.array(z.object({ period: z.string().meta({ description: 'YYYY-MM at the program offset' }), points: z.number().int() })),
      inactivityDeadline: dateTime.nullable(),
    }),
  ),
  vouchers: z.array(z.object({ code: z.string(), benefitId: z.string(), kind: z.string(), issuedAt: dateTime, expiresAt: dateTime })),
});

// Serialised by fast-json-stringify: walletResponse builds exactly this shape.
serializeWithSchema(walletResponseSchema);

/** The wallet as JSON text, with the same serializer as GET /v1/members/{id}/wallet (the NATS wallet service uses it). */
export const walletJson: (wallet: WalletResponse) => string = serializerOf(walletResponseSchema);

export function ledgerEntryResponse(entry: LedgerEntry) {
  return {
    seq: entry.seq,
    eventId: entry.eventId,
    kind: entry.kind,
    balance: entry.balance,
    currency: entry.currency,
    points: entry.points,
    ruleId: entry.ruleId,
    ...(entry.promotionId !== undefined ? { promotionId: entry.promotionId } : {}),
    ...(entry.lotExpiresAtMs !== undefined ? { lotExpiresAt: isoOrNull(entry.lotExpiresAtMs) } : {}),
    ...(entry.releaseAtMs !== undefined ? { releaseAt: iso(entry.releaseAtMs) } : {}),
    ...(entry.reference !== undefined ? { reference: entry.reference } : {}),
    ...(entry.reason !== undefined ? { reason: entry.reason } : {}),
    ...(entry.operator !== undefined ? { operator: entry.operator } : {}),
    occurredAt: iso(entry.occurredAtMs),
  };
}

export const ledgerEntrySchema = z.object({
  seq: z.number().int(),
  eventId: z.string(),
  kind: z.string(),
  balance: z.enum(['spendable', 'pending', 'qualifying', 'debt']),
  currency: z.string(),
  points: z.number().int().meta({ description: 'signed change' }),
  ruleId: z.string(),
  promotionId: z.string().optional(),
  lotExpiresAt: dateTime.nullable().optional(),
  releaseAt: dateTime.optional(),
  reference: z.string().optional(),
  reason: z.string().optional(),
  operator: z.string().optional(),
  occurredAt: dateTime,
});

// ---- cursors: opaque to clients, a ledger sequence number inside ----

const CURSOR_PREFIX = 'l1:';

export function encodeCursor(afterSeq: number): string {
  return Buffer.from(`${CURSOR_PREFIX}${afterSeq}`, 'utf8').toString('base64url');
}

/** The afterSeq of a cursor, or undefined when it is not one of ours. */
export function decodeCursor(cursor: string): number | undefined {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cursor)) return undefined;
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!text.startsWith(CURSOR_PREFIX)) return undefined;
  const digits = text.slice(CURSOR_PREFIX.length);
  if (!/^\d{1,15}$/.test(digits)) return undefined;
  return Number(digits);
}
