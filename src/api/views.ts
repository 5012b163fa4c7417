import { z } from 'zod';
import type { Program } from '../domain/program.js';
import { civilFromDays, DAY_MS, monthIndexOf, monthStartMs } from '../domain/time.js';
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

/** When the calendar month of `ms` (at a fixed UTC offset) ends: expiringByMonth's periods move on then. */
export function monthEndMs(ms: number, utcOffsetMinutes: number): number {
  return monthStartMs(monthIndexOf(ms, utcOffsetMinutes) + 1, utcOffsetMinutes);
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
    paidMembership:
      view.paidMembership === null
        ? null
        : {
            planId: view.paidMembership.planId,
            name: view.paidMembership.name,
            status: view.paidMembership.status,
            since: iso(view.paidMembership.sinceMs),
            termEndsAt: iso(view.paidMembership.termEndsAtMs),
            graceEndsAt: iso(view.paidMembership.graceEndsAtMs),
            endedAt: isoOrNull(view.paidMembership.endedAtMs),
          },
    badges: view.badges.map((badge) => ({ id: badge.id, name: badge.name, earnedAt: isoOrNull(badge.earnedAtMs), progress: badge.progress, target: badge.target })),
  };
}

export type WalletResponse = ReturnType<typeof walletResponse>;

// ---- the wallet as JSON text, written directly ----

const TWO_DIGITS = Array.from({ length: 100 }, (_, value) => String(value).padStart(2, '0'));
const THREE_DIGITS = Array.from({ length: 1000 }, (_, value) => String(value).padStart(3, '0'));
/** Date.prototype.toISOString writes years 0-9999 with four digits; beyond, ±YYYYYY (left to it). */
const ISO_FAST_MAX_MS = Date.UTC(10_000, 0, 1);

/**
 * Date.prototype.toISOString without a Date: the same text for every time
 * (checked against it in test/unit/api/wallet-body.test.ts), a few times faster.
 */
export function isoString(ms: number): string {
  if (!(ms >= 0 && ms < ISO_FAST_MAX_MS) || !Number.isInteger(ms)) return new Date(ms).toISOString();
  const days = Math.floor(ms / DAY_MS);
  let rest = ms - days * DAY_MS;
  const civil = civilFromDays(days); // days ≥ 0 here
  const year = Math.floor(civil / 10_000);
  const month = Math.floor((civil - year * 10_000) / 100);
  const day = civil - year * 10_000 - month * 100;
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1000);
  const millis = rest - seconds * 1000;
  return `${year < 1000 ? String(year).padStart(4, '0') : year}-${TWO_DIGITS[month]}-${TWO_DIGITS[day]}T${TWO_DIGITS[hours]}:${TWO_DIGITS[minutes]}:${TWO_DIGITS[seconds]}.${THREE_DIGITS[millis]}Z`;
}

/** A JSON number as JSON.stringify writes it. */
const jsonNumber = (value: number): string => (Number.isFinite(value) ? String(value) : 'null');
const jsonString = (value: string): string => JSON.stringify(value);
const jsonIso = (ms: number): string => `"${isoString(ms)}"`;
const jsonIsoOrNull = (ms: number | null | undefined): string => (ms === null || ms === undefined ? 'null' : jsonIso(ms));

/**
 * walletJson(walletResponse(view, program)), character for character, without
 * building the response object, its Date objects and ISO strings one by one
 * (test/unit/api/wallet-body.test.ts compares the two over many members).
 * The HTTP wallet route writes its body with it; walletResponse stays the
 * definition of the shape (and what the NATS wallet service uses).
 */
export function walletBody(view: WalletView, program: Program): string {
  const offset = program.utcOffsetMinutes ?? 0;
  const tier = view.tier;
  let text = `{"memberId":${jsonString(view.memberId)},"status":${jsonString(view.status)},"asOf":${jsonIso(view.asOfMs)}`;
  text += `,"tier":{"id":${jsonString(tier.id)},"name":${jsonString(tier.name)},"since":${jsonIso(tier.sinceMs)},"basis":${jsonString(tier.basis)}`;
  text += `,"measure":${jsonNumber(tier.measure)},"periodEndsAt":${jsonIsoOrNull(tier.periodEndsAtMs)},"next":`;
  const next = tier.next;
  text +=
    next === null
      ? 'null'
      : `{"id":${jsonString(next.id)},"name":${jsonString(next.name)},"threshold":${jsonNumber(next.threshold)},"remaining":${jsonNumber(next.remaining)}}`;
  text += `,"keep":{"threshold":${jsonNumber(tier.keep.threshold)},"remaining":${jsonNumber(tier.keep.remaining)},"by":${jsonIsoOrNull(tier.keep.byMs)}},"grace":`;
  text += tier.grace === null ? 'null' : `{"until":${jsonIso(tier.grace.untilMs)},"targetTierId":${jsonString(tier.grace.targetTierId)}}`;
  text += '},"currencies":[';
  const startMonth = monthIndexOf(view.asOfMs, offset);
  for (let index = 0; index < view.currencies.length; index++) {
    const currency = view.currencies[index]!;
    if (index > 0) text += ',';
    text += `{"currency":${jsonString(currency.currency)},"spendable":${jsonNumber(currency.spendable)},"pending":${jsonNumber(currency.pending)}`;
    text += `,"qualifying":${jsonNumber(currency.qualifying)},"debt":${jsonNumber(currency.debt)},"pendingReleases":[`;
    for (let item = 0; item < currency.pendingReleases.length; item++) {
      const release = currency.pendingReleases[item]!;
      text += `${item > 0 ? ',' : ''}{"releaseAt":${jsonIso(release.releaseAtMs)},"points":${jsonNumber(release.points)}}`;
    }
    text += '],"expiring":[';
    const byMonth = new Array<number>(EXPIRY_PERIODS).fill(0);
    for (let item = 0; item < currency.expiring.length; item++) {
      const expiring = currency.expiring[item]!;
      text += `${item > 0 ? ',' : ''}{"expiresAt":${jsonIso(expiring.expiresAtMs)},"points":${jsonNumber(expiring.points)}}`;
      // As expiringByMonth: the coming EXPIRY_PERIODS calendar months at the program offset, the current one first.
      if (expiring.expiresAtMs < view.asOfMs) continue;
      const slot = monthIndexOf(expiring.expiresAtMs, offset) - startMonth;
      if (slot >= 0 && slot < EXPIRY_PERIODS) byMonth[slot]! += expiring.points;
    }
    text += '],"expiringByMonth":[';
    for (let slot = 0; slot < EXPIRY_PERIODS; slot++) {
      const monthIndex = startMonth + slot;
      const year = Math.floor(monthIndex / 12);
      text += `${slot > 0 ? ',' : ''}{"period":"${year}-${TWO_DIGITS[monthIndex - year * 12 + 1]}","points":${jsonNumber(byMonth[slot]!)}}`;
    }
    text += `],"inactivityDeadline":${jsonIsoOrNull(currency.inactivityDeadlineMs)}}`;
  }
  text += '],"vouchers":[';
  for (let index = 0; index < view.vouchers.length; index++) {
    const voucher = view.vouchers[index]!;
    text += `${index > 0 ? ',' : ''}{"code":${jsonString(voucher.code)},"benefitId":${jsonString(voucher.benefitId)},"kind":${jsonString(voucher.kind)}`;
    text += `,"issuedAt":${jsonIso(voucher.issuedAtMs)},"expiresAt":${jsonIso(voucher.expiresAtMs)}}`;
  }
  text += '],"paidMembership":';
  const paid = view.paidMembership;
  text +=
    paid === null
      ? 'null'
      : `{"planId":${jsonString(paid.planId)},"name":${jsonString(paid.name)},"status":${jsonString(paid.status)},"since":${jsonIso(paid.sinceMs)}` +
        `,"termEndsAt":${jsonIso(paid.termEndsAtMs)},"graceEndsAt":${jsonIso(paid.graceEndsAtMs)},"endedAt":${jsonIsoOrNull(paid.endedAtMs)}}`;
  text += ',"badges":[';
  for (let index = 0; index < view.badges.length; index++) {
    const badge = view.badges[index]!;
    text += `${index > 0 ? ',' : ''}{"id":${jsonString(badge.id)},"name":${jsonString(badge.name)},"earnedAt":${jsonIsoOrNull(badge.earnedAtMs)}`;
    text += `,"progress":${jsonNumber(badge.progress)},"target":${jsonNumber(badge.target)}}`;
  }
  return `${text}]}`;
}

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
  paidMembership: z
    .object({
      planId: z.string(),
      name: z.string(),
      status: z.enum(['active', 'lapsed', 'cancelled']),
      since: dateTime,
      termEndsAt: dateTime,
      graceEndsAt: dateTime,
      endedAt: dateTime.nullable(),
    })
    .nullable()
    .meta({ description: 'the paid membership, active or ended; null: never had one' }),
  badges: z
    .array(z.object({ id: z.string(), name: z.string(), earnedAt: dateTime.nullable(), progress: z.number().int(), target: z.number().int() }))
    .meta({ description: "every badge of the program, earned (earnedAt) or the member's progress toward it" }),
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
