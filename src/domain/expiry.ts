import { BUILTIN_RULE, type CompiledProgram } from './compiled.js';
import { creditSpendable, removeLots } from './lots.js';
import type { Lot } from './state.js';
import { addMonthsMs, DAY_MS, dayStartMs, periodsAfterMs, periodStartMs } from './time.js';
import { post, readCurrency, writeCurrency, type Work } from './work.js';

/**
 * Expiry: rolling (N months after earning, at the end of that day), calendar
 * (end of the period of earning plus whole periods), or inactivity (the whole
 * balance after N months without activity). Applied before every event at
 * the event's time and by the sweep at wall time.
 */

/** When points earned at `earnedAtMs` expire; null when they have no date of their own. */
export function lotExpiryMs(program: CompiledProgram, currencyId: string, earnedAtMs: number): number | null {
  const expiry = program.currencyById.get(currencyId)?.expiry;
  if (expiry === undefined) return null;
  const offset = program.offsetMinutes;
  switch (expiry.kind) {
    case 'none':
    case 'inactivity':
      return null;
    case 'rolling':
      // Whole days keep lots few (one per day at most) and easy to explain.
      return dayStartMs(addMonthsMs(earnedAtMs, expiry.months, offset), offset) + DAY_MS;
    case 'calendar':
      return periodsAfterMs(periodStartMs(earnedAtMs, expiry.period, offset), expiry.period, 1 + expiry.periodsAfter, offset);
  }
}

/** When the whole balance of an inactivity currency expires; null for other currencies. */
export function inactivityDeadlineMs(program: CompiledProgram, currencyId: string, lastActivityMs: number): number | null {
  const expiry = program.currencyById.get(currencyId)?.expiry;
  if (expiry?.kind !== 'inactivity') return null;
  return addMonthsMs(lastActivityMs, expiry.months, program.offsetMinutes);
}

/** Moves pending points whose holding period ended into spendable lots. */
export function releaseDuePending(work: Work, atMs: number): void {
  for (const currencyId in work.state.currencies) {
    const pendingLots = readCurrency(work.state, currencyId).pendingLots;
    if (pendingLots.length === 0 || pendingLots[0]!.releaseAtMs > atMs) continue;
    const currency = writeCurrency(work, currencyId);
    let released = 0;
    while (currency.pendingLots.length > 0 && currency.pendingLots[0]!.releaseAtMs <= atMs) {
      const lot = currency.pendingLots.shift()!;
      post(work, currency, currencyId, 'pending', -lot.points, 'release', BUILTIN_RULE.release, { occurredAtMs: lot.releaseAtMs }, lot.expiresAtMs, lot.releaseAtMs);
      creditSpendable(work, currencyId, lot.points, lot.expiresAtMs, 'release', BUILTIN_RULE.release, { occurredAtMs: lot.releaseAtMs });
      released += lot.points;
    }
    work.outcomes.push({
      kind: 'pending_released',
      eventId: work.eventId,
      memberId: work.state.memberId,
      occurredAtMs: atMs,
      currency: currencyId,
      points: released,
    });
  }
}

/** Expires lots whose date has come; one entry per lot, dated at its expiry. */
export function expireDueLots(work: Work, atMs: number): void {
  for (const currencyId in work.state.currencies) {
    const lots = readCurrency(work.state, currencyId).lots;
    const first = lots[0];
    if (first === undefined || first.expiresAtMs === null || first.expiresAtMs > atMs) continue;
    let count = 0;
    while (count < lots.length && isDue(lots[count]!, atMs)) count += 1;
    const currency = writeCurrency(work, currencyId);
    const expired = removeLots(work, currency, currencyId, count, 'expire', BUILTIN_RULE.expiry, (lot) => lot.expiresAtMs!);
    pushExpired(work, currencyId, expired, 'lot_expired', atMs);
  }
}

function isDue(lot: Lot, atMs: number): boolean {
  return lot.expiresAtMs !== null && lot.expiresAtMs <= atMs;
}

/** Expires the whole balance of inactivity currencies once the member has been inactive long enough. */
export function expireInactive(work: Work, atMs: number): void {
  for (const currencyId in work.state.currencies) {
    const deadline = inactivityDeadlineMs(work.program, currencyId, work.state.lastActivityMs);
    if (deadline === null || deadline > atMs) continue;
    const lots = readCurrency(work.state, currencyId).lots;
    if (lots.length === 0) continue;
    const currency = writeCurrency(work, currencyId);
    const expired = removeLots(work, currency, currencyId, lots.length, 'expire', BUILTIN_RULE.inactivity, () => deadline);
    pushExpired(work, currencyId, expired, 'inactivity', atMs);
  }
}

function pushExpired(work: Work, currencyId: string, points: number, reason: 'lot_expired' | 'inactivity', atMs: number): void {
  work.outcomes.push({
    kind: 'points_expired',
    eventId: work.eventId,
    memberId: work.state.memberId,
    occurredAtMs: atMs,
    currency: currencyId,
    points,
    reason,
  });
}

/**
 * Sweep only: tells the member, once per expiry date, about points expiring
 * within the currency's expiringSoonDays.
 */
export function notifyExpiring(work: Work, nowMs: number): void {
  for (const currencyId in work.state.currencies) {
    const horizonMs = work.program.currencyById.get(currencyId)?.expiringSoonMs ?? null;
    if (horizonMs === null) continue;
    const state = readCurrency(work.state, currencyId);
    const items = expiringWithin(work, currencyId, nowMs + horizonMs).filter((item) => item.expiresAtMs > state.noticeThroughMs);
    if (items.length === 0) continue;
    const currency = writeCurrency(work, currencyId);
    currency.noticeThroughMs = items[items.length - 1]!.expiresAtMs;
    work.outcomes.push({
      kind: 'points_expiring',
      eventId: work.eventId,
      memberId: work.state.memberId,
      occurredAtMs: nowMs,
      currency: currencyId,
      items,
    });
  }
}

/** Points expiring up to `untilMs`, by date: dated lots, or the whole balance at the inactivity deadline. */
export function expiringWithin(work: Pick<Work, 'program' | 'state'>, currencyId: string, untilMs: number): { expiresAtMs: number; points: number }[] {
  const currency = readCurrency(work.state, currencyId);
  const deadline = inactivityDeadlineMs(work.program, currencyId, work.state.lastActivityMs);
  if (deadline !== null) {
    return deadline <= untilMs && currency.spendable > 0 ? [{ expiresAtMs: deadline, points: currency.spendable }] : [];
  }
  const items: { expiresAtMs: number; points: number }[] = [];
  for (const lot of currency.lots) {
    if (lot.expiresAtMs === null || lot.expiresAtMs > untilMs) break;
    items.push({ expiresAtMs: lot.expiresAtMs, points: lot.points });
  }
  return items;
}
