import type { Program } from '../../src/domain/program.js';

/**
 * A second, deliberately simple model of docs/program.md, for the
 * differential test. It imports no rule from src/domain (only the Program
 * type of the parsed program file): its own calendar arithmetic on Date,
 * its own splitting and rounding, lots as a map from expiry to points, tier
 * measure as a map from month to points. Where it is slower or plainer than
 * the engine, that is the point: two ways to the same numbers.
 *
 * It covers what the retail and travel programs use: base and rule earn,
 * tier bonuses, promotions with budgets, pending points, rolling, calendar and
 * inactivity expiry, returns (lines and refunds) with debt and negative
 * shortfalls, redemptions and cancels, activities with caps, adjustments,
 * tier windows (calendar year, rolling months) with grace and downgrades,
 * challenges, benefits and vouchers, enroll, unenroll (forfeit, keep) and erase.
 */

export const DAY = 86_400_000;

// ---------- calendar, at the program's fixed offset, through Date ----------

export class Calendar {
  constructor(private readonly offsetMinutes: number) {}
  private local(ms: number): Date {
    return new Date(ms + this.offsetMinutes * 60_000);
  }
  private fromLocal(localMs: number): number {
    return localMs - this.offsetMinutes * 60_000;
  }
  dayStart(ms: number): number {
    const d = this.local(ms);
    return this.fromLocal(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  }
  month(ms: number): number {
    const d = this.local(ms);
    return d.getUTCFullYear() * 12 + d.getUTCMonth();
  }
  monthStart(month: number): number {
    return this.fromLocal(Date.UTC(Math.floor(month / 12), ((month % 12) + 12) % 12, 1));
  }
  addMonths(ms: number, months: number): number {
    const d = this.local(ms);
    const target = d.getUTCFullYear() * 12 + d.getUTCMonth() + months;
    const year = Math.floor(target / 12);
    const month = target - year * 12;
    const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
    const timeOfDay = ms + this.offsetMinutes * 60_000 - Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
    return this.fromLocal(Date.UTC(year, month, Math.min(d.getUTCDate(), lastDay)) + timeOfDay);
  }
  periodStart(ms: number, period: 'day' | 'week' | 'month' | 'quarter' | 'year'): number {
    if (period === 'day') return this.dayStart(ms);
    if (period === 'week') return this.dayStart(ms) - ((this.local(ms).getUTCDay() + 6) % 7) * DAY;
    const size = period === 'month' ? 1 : period === 'quarter' ? 3 : 12;
    return this.monthStart(Math.floor(this.month(ms) / size) * size);
  }
}

// ---------- integer arithmetic ----------

function roundDiv(numerator: number, denominator: number, rounding: 'floor' | 'half_up' | 'ceil'): number {
  const big = BigInt(numerator);
  const d = BigInt(denominator);
  const q = big / d;
  const r = big % d;
  if (rounding === 'ceil' && r > 0n) return Number(q + 1n);
  if (rounding === 'half_up' && r * 2n >= d) return Number(q + 1n);
  return Number(q);
}

/** The documented partial clawback: ⌊total × part ÷ whole⌋, the whole total once part reaches whole. */
function share(total: number, part: number, whole: number): number {
  return part >= whole ? total : roundDiv(total * part, whole, 'floor');
}

/** Largest remainder: floors, then one more to the largest remainders, earlier index on ties; all-zero weights as ones. */
export function split(total: number, weights: readonly number[]): number[] {
  if (weights.length === 1) return [total];
  const w = weights.every((x) => x === 0) ? weights.map(() => 1) : weights;
  const sum = w.reduce((a, b) => a + b, 0);
  const parts = w.map((x) => Math.floor((total * x) / sum));
  const order = w.map((x, index) => ({ index, remainder: (total * x) % sum })).sort((a, b) => b.remainder - a.remainder || a.index - b.index);
  let left = total - parts.reduce((a, b) => a + b, 0);
  for (const { index } of order) {
    if (left === 0) break;
    parts[index]! += 1;
    left -= 1;
  }
  return parts;
}

// ---------- state ----------

export interface ModelCurrency {
  spendable: number;
  pending: number;
  qualifying: number;
  debt: number;
  lifetime: number;
  /** expiry (null: none) → points */
  lots: Map<number | null, number>;
  /** `${release}|${expiry}` → lot */
  pendingLots: Map<string, { release: number; expiry: number | null; points: number }>;
}

interface ModelLine {
  sku: string;
  quantity: number;
  returned: number;
  points: Record<string, number>;
}

interface ModelOrder {
  id: string;
  at: number;
  closes: number;
  release: number;
  amount: number;
  refunded: number;
  month: number;
  lines: ModelLine[];
  currencies: Record<string, { earned: number; qualifyingEarned: number; clawed: number; qualifyingClawed: number; pendingLeft: number }>;
}

export interface ModelVoucher {
  benefitId: string;
  kind: string;
  prefix: string;
  issued: number;
  expires: number;
  redeemed: number | null;
}

export interface ModelMember {
  status: 'active' | 'unenrolled' | 'erased';
  segments: string[];
  tier: number;
  reviewAt: number | null;
  grace: { until: number; target: number } | null;
  buckets: Map<number, number>;
  currencies: Map<string, ModelCurrency>;
  lastActivity: number;
  orders: ModelOrder[];
  redemptions: { id: string; currency: string; until: number; lots: { expiry: number | null; points: number }[] }[];
  vouchers: ModelVoucher[];
  activityCounts: Map<string, { periodStart: number; count: number }>;
  promotionUsage: Map<string, { points: number; uses: number }>;
  challenges: Map<string, { times: number[]; completions: number }>;
  benefitsIssued: Map<string, number>;
}

export type ModelEvent = Record<string, any> & { type: string; id: string };

/** A refusal, with the engine's code. */
class Refused extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}
const refuse = (code: string): never => {
  throw new Refused(code);
};

function clone(member: ModelMember): ModelMember {
  return structuredClone(member);
}

export class Model {
  readonly members = new Map<string, ModelMember>();
  readonly calendar: Calendar;
  private readonly globalUsed = new Map<string, { points: number; uses: number }>();
  private readonly tierCurrency: string;
  private readonly earnCurrency: string;

  constructor(readonly program: Program) {
    this.calendar = new Calendar(program.utcOffsetMinutes);
    this.earnCurrency = program.earn.currency ?? program.currencies[0]!.id;
    this.tierCurrency = program.tierQualification.currency ?? program.currencies[0]!.id;
  }

  /** Applies one event at `t`; returns null when accepted, else the rejection code. The member is left untouched when refused. */
  apply(memberId: string, event: ModelEvent, t: number): string | null {
    const current = this.members.get(memberId);
    let member: ModelMember;
    if (current === undefined) {
      if (event.type === 'unenroll' || event.type === 'erase') return 'UNKNOWN_MEMBER';
      if (event.type !== 'enroll' && !this.program.membership.autoEnroll) return 'UNKNOWN_MEMBER';
      member = this.newMember(t);
    } else {
      if (current.status === 'erased') return 'MEMBER_ERASED';
      if (current.status === 'unenrolled' && event.type !== 'enroll' && event.type !== 'erase') return 'MEMBER_NOT_ACTIVE';
      member = clone(current);
    }
    const globalBefore = structuredClone(this.globalUsed);
    try {
      this.due(member, t);
      this.dispatch(member, event, t);
    } catch (error) {
      if (!(error instanceof Refused)) throw error;
      this.globalUsed.clear();
      for (const [key, value] of globalBefore) this.globalUsed.set(key, value);
      return error.code;
    }
    this.members.set(memberId, member);
    return null;
  }

  /** A scheduled sweep: what is due at `t`, nothing else (notices are not modelled). */
  sweep(memberId: string, t: number): void {
    const member = this.members.get(memberId);
    if (member !== undefined) this.due(member, t);
  }

  private newMember(t: number): ModelMember {
    return {
      status: 'active',
      segments: [],
      tier: 0,
      reviewAt: this.firstReviewAfter(t),
      grace: null,
      buckets: new Map(),
      currencies: new Map(),
      lastActivity: t,
      orders: [],
      redemptions: [],
      vouchers: [],
      activityCounts: new Map(),
      promotionUsage: new Map(),
      challenges: new Map(),
      benefitsIssued: new Map(),
    };
  }

  currency(member: ModelMember, id: string): ModelCurrency {
    let currency = member.currencies.get(id);
    if (currency === undefined) {
      currency = { spendable: 0, pending: 0, qualifying: 0, debt: 0, lifetime: 0, lots: new Map(), pendingLots: new Map() };
      member.currencies.set(id, currency);
    }
    return currency;
  }

  // ---------- expiry and lots ----------

  private expiryOf(currencyId: string, earnedAt: number): number | null {
    const expiry = this.program.currencies.find((currency) => currency.id === currencyId)!.expiry;
    const cal = this.calendar;
    if (expiry.kind === 'rolling') return cal.dayStart(cal.addMonths(earnedAt, expiry.months)) + DAY;
    if (expiry.kind === 'calendar') {
      const size = expiry.period === 'month' ? 1 : expiry.period === 'quarter' ? 3 : 12;
      return cal.monthStart(cal.month(cal.periodStart(earnedAt, expiry.period)) + (1 + expiry.periodsAfter) * size);
    }
    return null;
  }

  /** Soonest expiry first, no expiry last. */
  private static lotOrder(lots: Map<number | null, number>): (number | null)[] {
    return [...lots.keys()].sort((a, b) => (a === null ? 1 : b === null ? -1 : a - b));
  }

  /** Any credit of spendable points: a negative balance, then a debt, are repaid first. */
  private credit(member: ModelMember, currencyId: string, points: number, expiry: number | null): void {
    const c = this.currency(member, currencyId);
    let toLot = points - Math.min(points, Math.max(0, -c.spendable));
    c.spendable += points;
    const repay = Math.min(c.debt, toLot);
    c.debt -= repay;
    c.spendable -= repay;
    toLot -= repay;
    if (toLot > 0) c.lots.set(expiry, (c.lots.get(expiry) ?? 0) + toLot);
  }

  /** Takes points the member has; a preferred lot first, then soonest expiry first. */
  private take(member: ModelMember, currencyId: string, points: number, prefer?: number | null): { expiry: number | null; points: number }[] {
    const c = this.currency(member, currencyId);
    const taken: { expiry: number | null; points: number }[] = [];
    let left = points;
    const keys = Model.lotOrder(c.lots);
    if (prefer !== undefined && c.lots.has(prefer)) keys.unshift(prefer);
    for (const key of keys) {
      if (left === 0) break;
      const have = c.lots.get(key);
      if (have === undefined) continue;
      const amount = Math.min(have, left);
      if (amount === have) c.lots.delete(key);
      else c.lots.set(key, have - amount);
      taken.push({ expiry: key, points: amount });
      left -= amount;
    }
    if (left !== 0) throw new Error('model: took more than the lots hold');
    c.spendable -= points;
    return taken;
  }

  private expireLots(member: ModelMember, t: number): void {
    for (const c of member.currencies.values()) {
      for (const [expiry, points] of [...c.lots]) {
        if (expiry !== null && expiry <= t) {
          c.lots.delete(expiry);
          c.spendable -= points;
        }
      }
    }
  }

  // ---------- what becomes due with time ----------

  private due(member: ModelMember, t: number): void {
    for (const [currencyId, c] of member.currencies) {
      const ready = [...c.pendingLots.entries()].filter(([, lot]) => lot.release <= t).sort((a, b) => a[1].release - b[1].release);
      for (const [key, lot] of ready) {
        c.pendingLots.delete(key);
        c.pending -= lot.points;
        this.credit(member, currencyId, lot.points, lot.expiry);
      }
    }
    this.expireLots(member, t);
    for (const currency of this.program.currencies) {
      if (currency.expiry.kind !== 'inactivity') continue;
      const c = member.currencies.get(currency.id);
      if (c === undefined || c.lots.size === 0) continue;
      if (this.calendar.addMonths(member.lastActivity, currency.expiry.months) > t) continue;
      for (const points of c.lots.values()) c.spendable -= points;
      c.lots.clear();
    }
    this.tierReviews(member, t);
    member.orders = member.orders.filter((order) => order.closes > t);
    member.redemptions = member.redemptions.filter((record) => record.until > t);
    member.vouchers = member.vouchers.filter((voucher) => voucher.expires > t);
  }

  // ---------- tiers ----------

  private windowKind(): 'lifetime' | 'calendar_year' | 'rolling_months' {
    return this.program.tierQualification.window.kind;
  }

  private firstReviewAfter(t: number): number | null {
    const kind = this.windowKind();
    if (kind === 'lifetime') return null;
    const month = this.calendar.month(t);
    return this.calendar.monthStart(kind === 'calendar_year' ? (Math.floor(month / 12) + 1) * 12 : month + 1);
  }

  private measure(member: ModelMember): number {
    let total = 0;
    for (const amount of member.buckets.values()) total += amount;
    return total;
  }

  private supported(measure: number): number {
    let best = 0;
    this.program.tiers.forEach((tier, index) => {
      if ((tier.qualifyingPointsMin ?? 0) <= measure) best = index;
    });
    return best;
  }

  private windowMonths(): number {
    const window = this.program.tierQualification.window;
    return window.kind === 'rolling_months' ? window.months : 12;
  }

  private tierReviews(member: ModelMember, t: number): void {
    const q = this.program.tierQualification;
    for (;;) {
      const review = member.reviewAt;
      if (review === null) return;
      const grace = member.grace;
      if (grace !== null && grace.until <= review && grace.until <= t) {
        member.grace = null;
        const supported = this.supported(this.measure(member));
        const landing = Math.max(supported, grace.target);
        if (supported < member.tier && landing < member.tier) member.tier = landing;
        continue;
      }
      if (review > t) return;
      const supported = this.supported(this.measure(member));
      if (supported >= member.tier) member.grace = null;
      else if (member.grace === null) {
        const target = q.downgrade === 'one_step' ? Math.max(supported, member.tier - 1) : supported;
        if (q.graceDays > 0) member.grace = { until: review + q.graceDays * DAY, target };
        else member.tier = target;
      }
      // The window moves past the period end: the months that left it are ledgered out.
      const boundary = this.calendar.month(review);
      const firstKept = this.windowKind() === 'calendar_year' ? boundary : boundary - this.windowMonths() + 1;
      for (const [month, amount] of [...member.buckets]) {
        if (month >= firstKept) continue;
        member.buckets.delete(month);
        this.currency(member, this.tierCurrency).qualifying -= amount;
      }
      const step = this.windowKind() === 'calendar_year' ? 12 : 1;
      member.reviewAt = this.calendar.monthStart(boundary + step);
    }
  }

  private bucketOf(t: number): number {
    return this.windowKind() === 'lifetime' ? 0 : this.calendar.month(t);
  }

  private creditQualifying(member: ModelMember, currencyId: string, points: number, t: number): void {
    this.currency(member, currencyId).qualifying += points;
    if (currencyId !== this.tierCurrency) return;
    const month = this.bucketOf(t);
    member.buckets.set(month, (member.buckets.get(month) ?? 0) + points);
  }

  /** docs/program.md, "Qualifying points after returns and debits". `ownMonth` null: a debit. */
  private debitQualifying(member: ModelMember, currencyId: string, points: number, ownMonth: number | null): void {
    const c = this.currency(member, currencyId);
    if (currencyId !== this.tierCurrency) {
      c.qualifying -= Math.min(points, Math.max(0, c.qualifying));
      return;
    }
    if (ownMonth !== null && this.windowKind() !== 'lifetime' && member.reviewAt !== null) {
      const oldestLive = this.calendar.month(member.reviewAt) - this.windowMonths();
      if (ownMonth < oldestLive) return;
    }
    const months = [...member.buckets.keys()].sort((a, b) => b - a);
    if (ownMonth !== null && member.buckets.has(ownMonth)) months.unshift(ownMonth);
    let left = points;
    for (const month of months) {
      const have = member.buckets.get(month);
      if (have === undefined || left === 0) continue;
      const amount = Math.min(have, left);
      if (amount === have) member.buckets.delete(month);
      else member.buckets.set(month, have - amount);
      left -= amount;
      c.qualifying -= amount;
    }
  }

  private upgrade(member: ModelMember, t: number, issued: ModelVoucher[]): void {
    const supported = this.supported(this.measure(member));
    if (supported === member.tier && member.grace !== null) member.grace = null;
    if (supported <= member.tier) return;
    const from = member.tier;
    member.tier = supported;
    member.grace = null;
    for (let index = from + 1; index <= supported; index++) {
      const tierId = this.program.tiers[index]!.id;
      for (const benefit of this.program.benefits) {
        if (benefit.trigger.kind === 'tier_reached' && benefit.trigger.tierId === tierId) this.issue(member, benefit, t, issued);
      }
    }
  }

  // ---------- benefits ----------

  private issue(member: ModelMember, benefit: Program['benefits'][number], t: number, _issued: ModelVoucher[]): void {
    const count = member.benefitsIssued.get(benefit.id) ?? 0;
    const repeatable = benefit.trigger.kind === 'challenge_completed' || benefit.trigger.kind === 'paid_term_started';
    if (!repeatable && count > 0) return;
    member.benefitsIssued.set(benefit.id, count + 1);
    member.vouchers.push({
      benefitId: benefit.id,
      kind: benefit.issue.kind,
      prefix: benefit.issue.codePrefix,
      issued: t,
      expires: t + benefit.issue.validDays * DAY,
      redeemed: null,
    });
  }

  private milestones(member: ModelMember, t: number): void {
    for (const benefit of this.program.benefits) {
      const trigger = benefit.trigger;
      if (trigger.kind !== 'points_milestone') continue;
      const currencyId = trigger.currency ?? this.earnCurrency;
      if ((member.currencies.get(currencyId)?.lifetime ?? 0) >= trigger.points) this.issue(member, benefit, t, []);
    }
  }

  // ---------- events ----------

  private dispatch(member: ModelMember, event: ModelEvent, t: number): void {
    switch (event.type) {
      case 'purchase':
        return this.purchase(member, event, t);
      case 'return':
        return this.return(member, event, t);
      case 'redemption':
        return this.redeem(member, event, t);
      case 'redemption_cancel':
        return this.cancel(member, event, t);
      case 'activity':
        return this.activity(member, event, t);
      case 'adjustment':
        return this.adjust(member, event, t);
      case 'voucher_redeem':
        return this.voucherRedeem(member, event, t);
      case 'enroll':
        member.status = 'active';
        if (event.segments !== undefined) member.segments = [...new Set<string>(event.segments)];
        member.lastActivity = Math.max(member.lastActivity, t);
        return;
      case 'unenroll':
        member.status = 'unenrolled';
        if (this.program.membership.unenrollPolicy === 'forfeit') {
          for (const c of member.currencies.values()) {
            for (const points of c.lots.values()) c.spendable -= points;
            c.lots.clear();
            c.pendingLots.clear();
            c.pending = 0;
            c.qualifying = 0;
          }
          member.buckets.clear();
          member.tier = 0;
          member.grace = null;
          member.orders = [];
          member.redemptions = [];
          member.vouchers = [];
          member.challenges.clear();
        }
        return;
      case 'erase':
        member.status = 'erased';
        member.segments = [];
        return;
      default:
        throw new Error(`model: no event type ${event.type}`);
    }
  }

  private purchase(member: ModelMember, event: ModelEvent, t: number): void {
    const program = this.program;
    if (event.currency !== program.currency) refuse('CURRENCY_NOT_ACCEPTED');
    const orderId: string = event.orderId ?? event.id;
    if (program.returns !== undefined && member.orders.some((order) => order.id === orderId)) refuse('DUPLICATE_ORDER');
    const items: { sku: string; category?: string; quantity: number; unitPriceMinor: number }[] = event.items ?? [];
    const values = items.length === 0 ? [event.amountMinor as number] : items.map((line) => line.quantity * line.unitPriceMinor);
    const rounding = program.earn.rounding;
    const base = roundDiv(event.amountMinor * program.earn.points, program.earn.perAmountMinor, rounding);
    const baseByLine = split(base, values);
    const parts: { currency: string; qualifying: boolean; perLine: number[] }[] = [];
    const add = (currency: string, qualifying: boolean, perLine: number[]) => parts.push({ currency, qualifying, perLine });
    add(this.earnCurrency, true, baseByLine);
    const tier = program.tiers[member.tier]!;
    if ((tier.earnMultiplierPercent ?? 100) > 100) {
      add(this.earnCurrency, true, split(roundDiv(base * (tier.earnMultiplierPercent! - 100), 100, rounding), baseByLine));
    }
    type Scope = { skus?: string[]; categories?: string[]; channels?: string[]; partners?: string[]; minBasketMinor?: number };
    const holds = (when: Scope) =>
      (when.channels === undefined || when.channels.includes(event.channel)) &&
      (when.partners === undefined || when.partners.includes(event.partner)) &&
      event.amountMinor >= (when.minBasketMinor ?? 0);
    const selects = (when: Scope) => when.skus !== undefined || when.categories !== undefined;
    const linesOf = (when: Scope) =>
      items.flatMap((line, index) => (when.skus?.includes(line.sku) === true || (line.category !== undefined && when.categories?.includes(line.category) === true) ? [index] : []));
    const award = (a: any, lines: number[] | null): number[] => {
      const perLine = values.map(() => 0);
      if (lines === null) {
        if (a.kind === 'multiplier') return split(roundDiv(base * (a.percent - 100), 100, rounding), baseByLine);
        return split(a.points, values);
      }
      if (a.kind === 'multiplier') for (const line of lines) perLine[line] = roundDiv(baseByLine[line]! * (a.percent - 100), 100, rounding);
      else if (a.per === 'unit') for (const line of lines) perLine[line] = a.points * items[line]!.quantity;
      else split(a.points, lines.map((line) => values[line]!)).forEach((points, position) => (perLine[lines[position]!] = points));
      return perLine;
    };
    // Rules that select no lines, then those that do (program order within each); the order only affects ledger order.
    const rules = [...program.earn.rules.filter((rule) => !selects(rule.when)), ...program.earn.rules.filter((rule) => selects(rule.when))];
    for (const rule of rules) {
      if (!holds(rule.when)) continue;
      if (selects(rule.when)) {
        const lines = linesOf(rule.when);
        if (lines.length > 0) add(rule.currency ?? this.earnCurrency, rule.qualifying, award(rule.award, lines));
      } else add(rule.currency ?? this.earnCurrency, rule.qualifying, award(rule.award, null));
    }
    for (const promotion of program.promotions) {
      if (t < Date.parse(promotion.startsAt) || t >= Date.parse(promotion.endsAt)) continue;
      const e = promotion.eligibility;
      if (e.tiers !== undefined && !e.tiers.includes(tier.id)) continue;
      if (e.segments !== undefined && !member.segments.some((segment) => e.segments!.includes(segment))) continue;
      if (e.attributes !== undefined && Object.keys(e.attributes).length > 0) continue; // no attributes in this model's members
      if (!holds(promotion.when)) continue;
      const lines = selects(promotion.when) ? linesOf(promotion.when) : null;
      if (lines !== null && lines.length === 0) continue;
      const wanted = award(promotion.award, lines);
      const total = wanted.reduce((a, b) => a + b, 0);
      if (total <= 0) continue;
      const usage = member.promotionUsage.get(promotion.id) ?? { points: 0, uses: 0 };
      let granted = total;
      const perMember = promotion.budget.perMember;
      if (perMember !== undefined) {
        if (perMember.uses !== undefined && usage.uses >= perMember.uses) continue;
        if (perMember.points !== undefined) granted = Math.min(granted, perMember.points - usage.points);
        if (granted <= 0) continue;
      }
      const global = promotion.budget.global;
      if (global !== undefined) {
        const used = this.globalUsed.get(promotion.id) ?? { points: 0, uses: 0 };
        if (global.uses !== undefined && used.uses >= global.uses) continue;
        if (global.points !== undefined) granted = Math.min(granted, global.points - used.points);
        if (granted <= 0) continue;
        this.globalUsed.set(promotion.id, { points: used.points + granted, uses: used.uses + 1 });
      }
      if (perMember !== undefined) member.promotionUsage.set(promotion.id, { points: usage.points + granted, uses: usage.uses + 1 });
      add(promotion.currency ?? this.earnCurrency, promotion.qualifying, granted === total ? wanted : split(granted, wanted));
    }
    const pendingDays = program.earn.pendingDays;
    const release = pendingDays > 0 ? this.calendar.dayStart(t) + (pendingDays + 1) * DAY : null;
    const orderCurrencies: ModelOrder['currencies'] = {};
    for (const part of parts) {
      const total = part.perLine.reduce((a, b) => a + b, 0);
      if (total === 0) continue;
      const c = this.currency(member, part.currency);
      const expiry = this.expiryOf(part.currency, t);
      if (release === null) this.credit(member, part.currency, total, expiry);
      else {
        const key = `${release}|${expiry}`;
        const lot = c.pendingLots.get(key) ?? { release, expiry, points: 0 };
        c.pendingLots.set(key, { ...lot, points: lot.points + total });
        c.pending += total;
      }
      const qualifying = part.qualifying && program.currencies.find((currency) => currency.id === part.currency)!.qualifying;
      if (qualifying) this.creditQualifying(member, part.currency, total, t);
      c.lifetime += total;
      const entry = (orderCurrencies[part.currency] ??= { earned: 0, qualifyingEarned: 0, clawed: 0, qualifyingClawed: 0, pendingLeft: 0 });
      entry.earned += total;
      if (qualifying) entry.qualifyingEarned += total;
      if (release !== null) entry.pendingLeft += total;
    }
    if (program.returns !== undefined) {
      member.orders.push({
        id: orderId,
        at: t,
        closes: this.calendar.dayStart(t) + (program.returns.windowDays + 1) * DAY,
        release: release ?? t,
        amount: event.amountMinor,
        refunded: 0,
        month: this.bucketOf(t),
        lines: items.map((line, index) => {
          const points: Record<string, number> = {};
          for (const part of parts) if (part.perLine[index]! > 0) points[part.currency] = (points[part.currency] ?? 0) + part.perLine[index]!;
          return { sku: line.sku, quantity: line.quantity, returned: 0, points };
        }),
        currencies: orderCurrencies,
      });
      if (member.orders.length > program.returns.ordersMax) member.orders.shift();
    }
    member.lastActivity = Math.max(member.lastActivity, t);
    for (const challenge of program.challenges) {
      if (event.amountMinor < challenge.minAmountMinor) continue;
      const progress = member.challenges.get(challenge.id) ?? { times: [], completions: 0 };
      if (progress.completions > 0 && !challenge.repeatable) continue;
      const times = [...progress.times.filter((time) => time > t - challenge.withinDays * DAY), t];
      if (times.length < challenge.count) {
        member.challenges.set(challenge.id, { times, completions: progress.completions });
        continue;
      }
      member.challenges.set(challenge.id, { times: [], completions: progress.completions + 1 });
      for (const benefit of program.benefits) {
        if (benefit.trigger.kind === 'challenge_completed' && benefit.trigger.challengeId === challenge.id) this.issue(member, benefit, t, []);
      }
    }
    this.milestones(member, t);
    this.upgrade(member, t, []);
  }

  private return(member: ModelMember, event: ModelEvent, t: number): void {
    const returns = this.program.returns ?? refuse('RETURNS_DISABLED');
    const order = member.orders.find((candidate) => candidate.id === event.orderId) ?? refuse('ORDER_NOT_FOUND');
    if (event.currency !== undefined && event.currency !== this.program.currency) refuse('CURRENCY_NOT_ACCEPTED');
    if (event.lines !== undefined) {
      for (const { sku, quantity } of event.lines as { sku: string; quantity: number }[]) {
        let left = quantity;
        for (const line of order.lines) {
          if (line.sku !== sku) continue;
          const taken = Math.min(line.quantity - line.returned, left);
          line.returned += taken;
          left -= taken;
        }
        if (left > 0) refuse('RETURN_EXCEEDS_ORDER');
      }
    } else {
      if (order.refunded + event.amountMinor > order.amount) refuse('REFUND_EXCEEDS_ORDER');
      order.refunded += event.amountMinor;
    }
    for (const [currencyId, entry] of Object.entries(order.currencies)) {
      let fromLines = 0;
      for (const line of order.lines) if ((line.points[currencyId] ?? 0) > 0 && line.returned > 0) fromLines += share(line.points[currencyId]!, line.returned, line.quantity);
      const fromAmount = order.refunded > 0 ? share(entry.earned, order.refunded, order.amount) : 0;
      const target = Math.min(entry.earned, fromLines + fromAmount);
      const delta = target - entry.clawed;
      if (delta <= 0) continue;
      const c = this.currency(member, currencyId);
      const expiry = this.expiryOf(currencyId, order.at);
      let fromPending = 0;
      if (order.release > t && entry.pendingLeft > 0) {
        const key = `${order.release}|${expiry}`;
        const lot = c.pendingLots.get(key);
        if (lot !== undefined) {
          fromPending = Math.min(lot.points, entry.pendingLeft, delta);
          if (fromPending === lot.points) c.pendingLots.delete(key);
          else c.pendingLots.set(key, { ...lot, points: lot.points - fromPending });
          c.pending -= fromPending;
        }
      }
      const fromSpendable = delta - fromPending;
      const taken = Math.min(Math.max(0, c.spendable), fromSpendable);
      if (taken > 0) this.take(member, currencyId, taken, expiry);
      const rest = fromSpendable - taken;
      if (rest > 0 && returns.shortfall === 'negative') c.spendable -= rest;
      if (rest > 0 && returns.shortfall === 'debt') c.debt += rest;
      const qualifyingTarget = share(entry.qualifyingEarned, target, entry.earned);
      const qualifyingDelta = qualifyingTarget - entry.qualifyingClawed;
      if (qualifyingDelta > 0) this.debitQualifying(member, currencyId, qualifyingDelta, order.month);
      c.lifetime = Math.max(0, c.lifetime - delta);
      entry.clawed = target;
      entry.qualifyingClawed = qualifyingTarget;
      entry.pendingLeft -= fromPending;
    }
  }

  private redeem(member: ModelMember, event: ModelEvent, t: number): void {
    const program = this.program;
    if (!program.currencies.some((currency) => currency.id === event.currency)) refuse('UNKNOWN_CURRENCY');
    const rewards = program.redemption.rewards;
    if (rewards !== undefined) {
      const reward = rewards.find((candidate) => candidate.id === event.rewardId) ?? refuse('REWARD_UNKNOWN');
      if (reward.points !== event.points || (reward.currency ?? this.earnCurrency) !== event.currency) refuse('REWARD_PRICE_MISMATCH');
      if (reward.tiers !== undefined && !reward.tiers.includes(program.tiers[member.tier]!.id)) refuse('REWARD_NOT_ALLOWED');
    }
    if (this.currency(member, event.currency).spendable < event.points) refuse('INSUFFICIENT_POINTS');
    const lots = this.take(member, event.currency, event.points);
    const windowDays = program.redemption.cancelWindowDays;
    if (windowDays > 0) {
      member.redemptions.push({ id: event.id, currency: event.currency, until: t + windowDays * DAY, lots });
      member.redemptions.sort((a, b) => a.until - b.until);
    }
    member.lastActivity = Math.max(member.lastActivity, t);
  }

  private cancel(member: ModelMember, event: ModelEvent, t: number): void {
    const index = member.redemptions.findIndex((record) => record.id === event.redemptionId);
    if (index < 0) refuse('REDEMPTION_NOT_FOUND');
    const [record] = member.redemptions.splice(index, 1);
    for (const lot of record!.lots) this.credit(member, record!.currency, lot.points, lot.expiry);
    this.expireLots(member, t);
  }

  private activity(member: ModelMember, event: ModelEvent, t: number): void {
    const rule =
      this.program.activities.find((candidate) => candidate.activity === event.activity && (event.activity !== 'custom' || candidate.customType === event.customType)) ??
      refuse('UNKNOWN_ACTIVITY');
    if (rule.cap !== undefined) {
      const periodStart = rule.cap.period === 'lifetime' ? 0 : this.calendar.periodStart(t, rule.cap.period);
      const previous = member.activityCounts.get(rule.id);
      const count = previous !== undefined && previous.periodStart >= periodStart ? previous.count : 0;
      if (count >= rule.cap.count) refuse('ACTIVITY_CAP_REACHED');
      member.activityCounts.set(rule.id, { periodStart: Math.max(periodStart, previous?.periodStart ?? 0), count: count + 1 });
    }
    const currencyId = rule.currency ?? this.earnCurrency;
    this.credit(member, currencyId, rule.points, this.expiryOf(currencyId, t));
    if (rule.qualifying && this.program.currencies.find((currency) => currency.id === currencyId)!.qualifying) this.creditQualifying(member, currencyId, rule.points, t);
    this.currency(member, currencyId).lifetime += rule.points;
    member.lastActivity = Math.max(member.lastActivity, t);
    this.milestones(member, t);
    this.upgrade(member, t, []);
  }

  private adjust(member: ModelMember, event: ModelEvent, t: number): void {
    const currency = this.program.currencies.find((candidate) => candidate.id === event.currency) ?? refuse('UNKNOWN_CURRENCY');
    if (event.qualifying === true && !currency.qualifying) refuse('QUALIFYING_NOT_SUPPORTED');
    if (event.direction === 'credit') {
      this.credit(member, currency.id, event.points, this.expiryOf(currency.id, t));
      if (event.qualifying === true) this.creditQualifying(member, currency.id, event.points, t);
      this.upgrade(member, t, []);
      return;
    }
    if (this.currency(member, currency.id).spendable < event.points) refuse('INSUFFICIENT_POINTS');
    this.take(member, currency.id, event.points);
    if (event.qualifying === true) this.debitQualifying(member, currency.id, event.points, null);
  }

  private voucherRedeem(member: ModelMember, event: ModelEvent, t: number): void {
    // The generator names a voucher by benefit and issue time (the code is the engine's hash).
    const voucher = member.vouchers.find((candidate) => `${candidate.benefitId}|${candidate.issued}` === event.voucherKey) ?? refuse('VOUCHER_UNKNOWN');
    if (voucher.kind !== 'voucher') refuse('VOUCHER_NOT_REDEEMABLE');
    if (voucher.redeemed !== null) refuse('VOUCHER_ALREADY_REDEEMED');
    voucher.redeemed = t;
    member.lastActivity = Math.max(member.lastActivity, t);
  }
}
