import { EventClock, type ClockSegment, DEFAULT_CLOCK } from './clock.js';
import { cumulative, Prng } from './prng.js';
import type { ActivityOption, ProgramModel, RewardOption } from './program-model.js';
import { ZipfSampler } from './zipf.js';

/**
 * Deterministic loyalty traffic for load tests: purchases, returns of earlier
 * orders, redemptions and non-purchase activities, in a configurable mix.
 * Same options, same events, byte for byte once encoded, whether they are
 * generated all at once or in chunks: every draw comes from one seeded PRNG in
 * index order, and event time is a function of the index (see clock.ts).
 *
 * The generator keeps a little state so that what it produces is accepted by
 * the program most of the time, without knowing its rules in detail:
 * - returns reference a recent purchase of the same member (a bounded ring of
 *   the latest purchases), still inside the return window and among the
 *   member's last `ordersMax` orders, and return some of its lines, once;
 * - redemptions go to a member whose points, estimated conservatively (base
 *   earn only, released a full pending period late, clawbacks over-counted),
 *   cover the reward;
 * - activities go to a member who has not yet reached the activity's cap
 *   (counted as if period caps never reset).
 * Memory: a Zipf table of 8 bytes per member, plus 4 bytes per member for
 * returns, 14 for redemptions and 1 per capped activity, allocated only when
 * the mix has that kind; nothing grows with the number of events.
 */

export const EVENT_KINDS = ['purchase', 'return', 'redemption', 'activity'] as const;
export type EventKind = (typeof EVENT_KINDS)[number];
export const KIND_PURCHASE = 0;
export const KIND_RETURN = 1;
export const KIND_REDEMPTION = 2;
export const KIND_ACTIVITY = 3;

export interface BenchLineItem {
  sku: string;
  category: string;
  quantity: number;
  unitPriceMinor: number;
}

/** The purchase event of the engine's input contract (src/domain/events.ts). */
export interface BenchPurchaseEvent {
  id: string;
  memberId: string;
  type: 'purchase';
  occurredAt: string;
  orderId: string;
  amountMinor: number;
  currency: string;
  channel: string;
  items: BenchLineItem[];
}

export interface BenchReturnEvent {
  id: string;
  memberId: string;
  type: 'return';
  occurredAt: string;
  orderId: string;
  lines: { sku: string; quantity: number }[];
}

export interface BenchRedemptionEvent {
  id: string;
  memberId: string;
  type: 'redemption';
  occurredAt: string;
  rewardId: string;
  points: number;
  currency: string;
}

export interface BenchActivityEvent {
  id: string;
  memberId: string;
  type: 'activity';
  occurredAt: string;
  activity: ActivityOption['activity'];
  customType?: string;
}

export type BenchEvent = BenchPurchaseEvent | BenchReturnEvent | BenchRedemptionEvent | BenchActivityEvent;

/** The standard mix: 90 % purchases, 5 % returns, 3 % redemptions, 2 % activities. */
export const STANDARD_MIX: Readonly<Record<EventKind, number>> = { purchase: 90, return: 5, redemption: 3, activity: 2 };

export interface GeneratorOptions {
  seed: number;
  /** Part of every event id (`e<runId>-<index>`), so ids of different runs never collide. */
  runId: string;
  members: number;
  /** Member ids are `<memberPrefix><rank>`: a warm-up load uses another prefix to touch other members. */
  memberPrefix: string;
  /** Zipf exponent of member activity; 0 = uniform. */
  zipfExponent: number;
  /** Relative weights per kind. */
  mix: Partial<Record<EventKind, number>>;
  /** Events in the whole load (event time is spread over them). */
  count: number;
  clock: readonly ClockSegment[];
  program: ProgramModel;
  /** Weight of a basket with 1, 2, ... lines (the table's length is the maximum). */
  basketLineWeights: readonly number[];
  /** Latest purchases a return can pick from. */
  recentOrdersMax: number;
  /** Members drawn, at most, to find one who can redeem or still earn an activity. */
  memberDrawsMax: number;
}

export const DEFAULT_GENERATOR_OPTIONS: Omit<GeneratorOptions, 'runId' | 'count' | 'program'> = {
  seed: 1,
  members: 100_000,
  memberPrefix: 'm',
  zipfExponent: 1.0,
  mix: STANDARD_MIX,
  clock: DEFAULT_CLOCK,
  basketLineWeights: [30, 22, 16, 11, 8, 6, 4, 3],
  recentOrdersMax: 65_536,
  memberDrawsMax: 16,
};

interface Category {
  name: string;
  code: string;
  weight: number;
  priceMinMinor: number;
  priceMaxMinor: number;
  skus: number;
}

export const CATEGORIES: readonly Category[] = [
  { name: 'grocery', code: 'GRO', weight: 30, priceMinMinor: 99, priceMaxMinor: 2_999, skus: 4_000 },
  { name: 'apparel', code: 'APP', weight: 15, priceMinMinor: 999, priceMaxMinor: 12_999, skus: 3_000 },
  { name: 'home', code: 'HOM', weight: 12, priceMinMinor: 499, priceMaxMinor: 29_999, skus: 2_000 },
  { name: 'beauty', code: 'BEA', weight: 10, priceMinMinor: 299, priceMaxMinor: 7_999, skus: 1_500 },
  { name: 'books', code: 'BOO', weight: 9, priceMinMinor: 499, priceMaxMinor: 4_999, skus: 5_000 },
  { name: 'toys', code: 'TOY', weight: 7, priceMinMinor: 499, priceMaxMinor: 9_999, skus: 1_000 },
  { name: 'sports', code: 'SPO', weight: 6, priceMinMinor: 999, priceMaxMinor: 19_999, skus: 1_000 },
  { name: 'shoes', code: 'SHO', weight: 6, priceMinMinor: 2_999, priceMaxMinor: 19_999, skus: 1_200 },
  { name: 'electronics', code: 'ELE', weight: 5, priceMinMinor: 1_999, priceMaxMinor: 149_999, skus: 800 },
];
const CATEGORY_CUMULATIVE = cumulative(CATEGORIES.map((category) => category.weight));
const QUANTITY_CUMULATIVE = cumulative([70, 20, 7, 3]);
const CHANNELS = ['web', 'app', 'store'] as const;
const CHANNEL_CUMULATIVE = cumulative([45, 35, 20]);
/** Line slots per remembered order (the basket maximum is at most this). */
const RING_LINES = 8;
const SKU_CODE_BASE = 100_000;
const DAY_MS = 86_400_000;
/** Returns pick orders younger than this share of the return window, so the window never closes under them. */
const RETURN_WINDOW_SHARE = 0.9;
const U32_MAX = 0xffff_ffff;

export interface GeneratedEvent {
  index: number;
  kind: EventKind;
  /** Zipf rank of the member: 0 is the most active. */
  memberRank: number;
  event: BenchEvent;
}

/** How often the generator could not follow its own plan (the events are still valid; they may be refused by the program). */
export interface GeneratorStats {
  byKind: Record<EventKind, number>;
  /** Returns drawn when no recent order could be returned: a purchase was generated instead. */
  returnsReplacedByPurchases: number;
  /** Redemptions sent to a member whose estimated points did not cover the reward (likely refused: INSUFFICIENT_POINTS). */
  redemptionsUnfunded: number;
  /** Activities sent to a member who had reached every activity's cap (likely refused: ACTIVITY_CAP_REACHED). */
  activitiesCapped: number;
}

export function memberIdOf(rank: number, prefix = 'm'): string {
  return `${prefix}${rank}`;
}

export function eventIdOf(runId: string, index: number): string {
  return `e${runId}-${index}`;
}

export function orderIdOf(runId: string, index: number): string {
  return `o${runId}-${index}`;
}

/** The event index encoded in an id made by eventIdOf, or -1 for an id of another run. */
export function eventIndexOf(runId: string, eventId: string): number {
  const prefixLength = runId.length + 2;
  if (eventId.length <= prefixLength || eventId.charCodeAt(0) !== 101 /* e */) return -1;
  if (eventId.charCodeAt(prefixLength - 1) !== 45 /* - */ || !eventId.startsWith(runId, 1)) return -1;
  let index = 0;
  for (let position = prefixLength; position < eventId.length; position++) {
    const digit = eventId.charCodeAt(position) - 48;
    if (digit < 0 || digit > 9) return -1;
    index = index * 10 + digit;
  }
  return index;
}

export function validateGeneratorOptions(options: GeneratorOptions): void {
  if (!/^[A-Za-z0-9_]{1,32}$/.test(options.runId)) throw new RangeError(`runId must be 1-32 letters, digits or "_", got ${JSON.stringify(options.runId)}`);
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,15}$/.test(options.memberPrefix)) throw new RangeError(`memberPrefix must be 1-16 id characters starting with a letter, got ${JSON.stringify(options.memberPrefix)}`);
  if (!Number.isInteger(options.members) || options.members < 1) throw new RangeError(`members must be an integer >= 1, got ${options.members}`);
  if (!Number.isInteger(options.count) || options.count < 1) throw new RangeError(`count must be an integer >= 1, got ${options.count}`);
  if (!/^[A-Z]{3}$/.test(options.program.currency)) throw new RangeError(`currency must be an ISO 4217 code, got ${options.program.currency}`);
  if (options.basketLineWeights.length < 1 || options.basketLineWeights.length > RING_LINES) {
    throw new RangeError(`basketLineWeights needs 1 to ${RING_LINES} weights`);
  }
  if (!Number.isInteger(options.recentOrdersMax) || options.recentOrdersMax < 1) throw new RangeError('recentOrdersMax must be an integer >= 1');
  if (!Number.isInteger(options.memberDrawsMax) || options.memberDrawsMax < 1) throw new RangeError('memberDrawsMax must be an integer >= 1');
  let total = 0;
  for (const [kind, weight] of Object.entries(options.mix)) {
    if (!(EVENT_KINDS as readonly string[]).includes(kind)) throw new RangeError(`unknown event kind in mix: ${kind}`);
    if (weight === undefined || !Number.isFinite(weight) || weight < 0) throw new RangeError(`mix weight of ${kind} must be finite and >= 0`);
    total += weight;
  }
  if (!((options.mix.purchase ?? 0) > 0)) throw new RangeError('the mix needs purchases (returns, redemptions and activities build on them)');
  if (!(total > 0)) throw new RangeError('the event mix needs a positive weight');
  if ((options.mix.redemption ?? 0) > 0 && options.program.rewards.length === 0) throw new RangeError('redemptions need a reward the program offers to every tier');
  if ((options.mix.activity ?? 0) > 0 && options.program.activities.length === 0) throw new RangeError('activities need a program that rewards activities');
  if ((options.mix.return ?? 0) > 0 && options.program.returnWindowDays === null) throw new RangeError('returns need a program that takes returns');
}

/** Produces events one by one, in index order. */
export class EventGenerator {
  readonly options: GeneratorOptions;
  readonly members: ZipfSampler;
  readonly stats: GeneratorStats = {
    byKind: { purchase: 0, return: 0, redemption: 0, activity: 0 },
    returnsReplacedByPurchases: 0,
    redemptionsUnfunded: 0,
    activitiesCapped: 0,
  };
  private readonly prng: Prng;
  private readonly clock: EventClock;
  private readonly kinds: EventKind[];
  private readonly kindCumulative: number[];
  private readonly lineCumulative: number[];
  private readonly memberIds: (string | undefined)[];
  private readonly program: ProgramModel;
  private nextIndex = 0;

  // Recent purchases (a ring, oldest first), for returns.
  private readonly ring: RecentOrders | null;
  /** Purchases generated per member so far (returns need the order among the member's last ordersMax). */
  private readonly purchasesOf: Uint32Array | null;

  // Conservative spendable-points estimate per member, for redemptions.
  private readonly released: Uint32Array | null;
  private readonly pendingCurrent: Uint32Array | null;
  private readonly pendingPrevious: Uint32Array | null;
  private readonly pendingEpoch: Int32Array | null;
  private readonly epochMs: number;
  private readonly epochOriginMs: number;
  private readonly rewardCumulative: number[];

  // Activity counts per member and activity (saturating at 255).
  private readonly activityCounts: Uint8Array | null;
  private readonly activityCumulative: number[];

  constructor(options: GeneratorOptions) {
    validateGeneratorOptions(options);
    this.options = options;
    this.program = options.program;
    this.prng = new Prng(options.seed);
    this.clock = new EventClock(options.clock, options.count);
    this.members = new ZipfSampler(options.members, options.zipfExponent);
    this.kinds = EVENT_KINDS.filter((kind) => (options.mix[kind] ?? 0) > 0);
    this.kindCumulative = cumulative(this.kinds.map((kind) => options.mix[kind] ?? 0));
    this.lineCumulative = cumulative(options.basketLineWeights);
    this.memberIds = new Array<string | undefined>(options.members);
    const returns = (options.mix.return ?? 0) > 0;
    const redemptions = (options.mix.redemption ?? 0) > 0;
    const activities = (options.mix.activity ?? 0) > 0;
    this.ring = returns ? new RecentOrders(options.recentOrdersMax) : null;
    this.purchasesOf = returns ? new Uint32Array(options.members) : null;
    this.released = redemptions ? new Uint32Array(options.members) : null;
    this.pendingCurrent = redemptions ? new Uint32Array(options.members) : null;
    this.pendingPrevious = redemptions ? new Uint32Array(options.members) : null;
    this.pendingEpoch = redemptions ? new Int32Array(options.members) : null;
    this.epochMs = Math.max(1, this.program.pendingDays) * DAY_MS;
    this.epochOriginMs = options.clock[0]!.fromMs;
    this.rewardCumulative = this.program.rewards.length > 0 ? cumulative(this.program.rewards.map((reward) => reward.weight)) : [];
    this.activityCounts = activities ? new Uint8Array(options.members * this.program.activities.length) : null;
    this.activityCumulative = this.program.activities.length > 0 ? cumulative(this.program.activities.map((activity) => activity.weight)) : [];
  }

  memberId(rank: number): string {
    let id = this.memberIds[rank];
    if (id === undefined) {
      id = memberIdOf(rank, this.options.memberPrefix);
      this.memberIds[rank] = id;
    }
    return id;
  }

  /** Events produced so far. */
  get produced(): number {
    return this.nextIndex;
  }

  next(): GeneratedEvent {
    const index = this.nextIndex++;
    if (index >= this.options.count) throw new RangeError(`the generator was made for ${this.options.count} events`);
    const atMs = this.clock.timeOf(index);
    const kind = this.kinds[this.prng.pickWeighted(this.kindCumulative)]!;
    let generated: GeneratedEvent | null = null;
    switch (kind) {
      case 'return':
        generated = this.return(index, atMs);
        if (generated === null) this.stats.returnsReplacedByPurchases += 1;
        break;
      case 'redemption':
        generated = this.redemption(index, atMs);
        break;
      case 'activity':
        generated = this.activity(index, atMs);
        break;
      case 'purchase':
        break;
    }
    generated ??= this.purchase(index, atMs);
    this.stats.byKind[generated.kind] += 1;
    return generated;
  }

  private purchase(index: number, atMs: number): GeneratedEvent {
    const memberRank = this.members.sample(this.prng);
    const lines = this.prng.pickWeighted(this.lineCumulative) + 1;
    const items: BenchLineItem[] = [];
    const codes: number[] = [];
    let amountMinor = 0;
    for (let line = 0; line < lines; line++) {
      const categoryIndex = this.prng.pickWeighted(CATEGORY_CUMULATIVE);
      const category = CATEGORIES[categoryIndex]!;
      const skuNumber = this.prng.nextInt(1, category.skus);
      const quantity = this.prng.pickWeighted(QUANTITY_CUMULATIVE) + 1;
      const code = categoryIndex * SKU_CODE_BASE + skuNumber;
      // One line per SKU, so a return's lines name lines without ambiguity; a repeated SKU is dropped.
      if (codes.includes(code)) continue;
      codes.push(code);
      const unitPriceMinor = priceOf(category, categoryIndex, skuNumber);
      amountMinor += quantity * unitPriceMinor;
      items.push({ sku: skuOf(code), category: category.name, quantity, unitPriceMinor });
    }
    const channel = CHANNELS[this.prng.pickWeighted(CHANNEL_CUMULATIVE)]!;
    const event: BenchPurchaseEvent = {
      id: eventIdOf(this.options.runId, index),
      memberId: this.memberId(memberRank),
      type: 'purchase',
      occurredAt: new Date(atMs).toISOString(),
      orderId: orderIdOf(this.options.runId, index),
      amountMinor,
      currency: this.program.currency,
      channel,
      items,
    };
    if (this.ring !== null && this.purchasesOf !== null) {
      const sequence = (this.purchasesOf[memberRank] = this.purchasesOf[memberRank]! + 1);
      this.ring.add(index, memberRank, atMs, sequence, codes, items);
    }
    if (this.released !== null) {
      const points = basePoints(amountMinor, this.program);
      if (this.program.pendingDays === 0) this.credit(memberRank, points);
      else {
        this.rollPending(memberRank, atMs);
        this.pendingCurrent![memberRank] = Math.min(U32_MAX, this.pendingCurrent![memberRank]! + points);
      }
    }
    return { index, kind: 'purchase', memberRank, event };
  }

  /** A return of some lines of a recent order of the same member; null when none can be returned now. */
  private return(index: number, atMs: number): GeneratedEvent | null {
    const ring = this.ring!;
    const windowMs = (this.program.returnWindowDays ?? 0) * DAY_MS * RETURN_WINDOW_SHARE;
    const first = ring.firstAtOrAfter(atMs - windowMs);
    if (first >= ring.size) return null;
    for (let attempt = 0; attempt < this.options.memberDrawsMax; attempt++) {
      const slot = ring.slotOf(this.prng.nextInt(first, ring.size - 1));
      if (ring.returned[slot] === 1) continue;
      const memberRank = ring.rank[slot]!;
      // The member's state keeps the last ordersMax orders only.
      if (this.purchasesOf![memberRank]! - ring.sequence[slot]! >= this.program.ordersMax) continue;
      ring.returned[slot] = 1;
      const lineCount = ring.lineCount[slot]!;
      const lines: { sku: string; quantity: number }[] = [];
      let returnedValueMinor = 0;
      for (let line = 0; line < lineCount; line++) {
        // Each line is returned with probability 1/2 (at least one is), fully or in part.
        if (this.prng.nextFloat() >= 0.5 && !(line === lineCount - 1 && lines.length === 0)) continue;
        const bought = ring.quantity[slot * RING_LINES + line]!;
        const quantity = this.prng.nextInt(1, bought);
        lines.push({ sku: skuOf(ring.sku[slot * RING_LINES + line]!), quantity });
        returnedValueMinor += quantity * ring.unitPrice[slot * RING_LINES + line]!;
      }
      if (this.released !== null) {
        // Over-count the clawback (promotions, tier multipliers, bonuses) so the estimate stays low.
        const clawed = 4 * basePoints(returnedValueMinor, this.program) + 200;
        this.released[memberRank] = Math.max(0, this.released[memberRank]! - clawed);
      }
      const event: BenchReturnEvent = {
        id: eventIdOf(this.options.runId, index),
        memberId: this.memberId(memberRank),
        type: 'return',
        occurredAt: new Date(atMs).toISOString(),
        orderId: orderIdOf(this.options.runId, ring.eventIndex[slot]!),
        lines,
      };
      return { index, kind: 'return', memberRank, event };
    }
    return null;
  }

  private redemption(index: number, atMs: number): GeneratedEvent {
    const reward: RewardOption = this.program.rewards[this.prng.pickWeighted(this.rewardCumulative)]!;
    let memberRank = 0;
    let funded = false;
    for (let attempt = 0; attempt < this.options.memberDrawsMax && !funded; attempt++) {
      memberRank = this.members.sample(this.prng);
      this.rollPending(memberRank, atMs);
      funded = this.released![memberRank]! >= reward.points;
    }
    if (funded) this.released![memberRank] = this.released![memberRank]! - reward.points;
    else this.stats.redemptionsUnfunded += 1;
    const event: BenchRedemptionEvent = {
      id: eventIdOf(this.options.runId, index),
      memberId: this.memberId(memberRank),
      type: 'redemption',
      occurredAt: new Date(atMs).toISOString(),
      rewardId: reward.id,
      points: reward.points,
      currency: reward.currency,
    };
    return { index, kind: 'redemption', memberRank, event };
  }

  private activity(index: number, atMs: number): GeneratedEvent {
    const activities = this.program.activities;
    const counts = this.activityCounts!;
    const preferred = this.prng.pickWeighted(this.activityCumulative);
    let memberRank = 0;
    let chosen = -1;
    for (let attempt = 0; attempt < this.options.memberDrawsMax && chosen < 0; attempt++) {
      memberRank = this.members.sample(this.prng);
      // The preferred activity, else the next one (in program order) this member can still earn.
      for (let step = 0; step < activities.length; step++) {
        const candidate = (preferred + step) % activities.length;
        const cap = activities[candidate]!.capCount;
        if (cap === null || counts[memberRank * activities.length + candidate]! < cap) {
          chosen = candidate;
          break;
        }
      }
    }
    if (chosen < 0) {
      this.stats.activitiesCapped += 1;
      chosen = preferred;
    } else {
      const slot = memberRank * activities.length + chosen;
      counts[slot] = Math.min(255, counts[slot]! + 1);
      const option = activities[chosen]!;
      if (this.released !== null && option.currency === this.program.pointsCurrency) this.credit(memberRank, option.points);
    }
    const option = activities[chosen]!;
    const event: BenchActivityEvent = {
      id: eventIdOf(this.options.runId, index),
      memberId: this.memberId(memberRank),
      type: 'activity',
      occurredAt: new Date(atMs).toISOString(),
      activity: option.activity,
      ...(option.customType === undefined ? {} : { customType: option.customType }),
    };
    return { index, kind: 'activity', memberRank, event };
  }

  private credit(memberRank: number, points: number): void {
    if (this.released !== null) this.released[memberRank] = Math.min(U32_MAX, this.released[memberRank]! + points);
  }

  /**
   * Pending points are kept in two buckets of one pending period each (by
   * event time since the first event): points earned in period e are all
   * spendable by the start of period e + 2, so they count from then on.
   */
  private rollPending(memberRank: number, atMs: number): void {
    if (this.pendingEpoch === null) return;
    // Epoch numbers start at 1, so the zero-filled table means "no points yet".
    const epoch = Math.floor((atMs - this.epochOriginMs) / this.epochMs) + 1;
    const last = this.pendingEpoch[memberRank]!;
    if (last === epoch) return;
    const current = this.pendingCurrent![memberRank]!;
    const previous = this.pendingPrevious![memberRank]!;
    if (last <= epoch - 2) {
      this.credit(memberRank, current + previous);
      this.pendingPrevious![memberRank] = 0;
    } else {
      this.credit(memberRank, previous);
      this.pendingPrevious![memberRank] = current;
    }
    this.pendingCurrent![memberRank] = 0;
    this.pendingEpoch[memberRank] = epoch;
  }
}

/** The latest purchases, oldest first, with what a return needs: member, time, lines. */
class RecentOrders {
  readonly capacity: number;
  size = 0;
  private head = 0;
  readonly eventIndex: Float64Array;
  readonly rank: Uint32Array;
  readonly timeMs: Float64Array;
  /** The member's purchase count when this order was placed (1 = their first). */
  readonly sequence: Uint32Array;
  readonly returned: Uint8Array;
  readonly lineCount: Uint8Array;
  readonly sku: Uint32Array;
  readonly quantity: Uint8Array;
  readonly unitPrice: Float64Array;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.eventIndex = new Float64Array(capacity);
    this.rank = new Uint32Array(capacity);
    this.timeMs = new Float64Array(capacity);
    this.sequence = new Uint32Array(capacity);
    this.returned = new Uint8Array(capacity);
    this.lineCount = new Uint8Array(capacity);
    this.sku = new Uint32Array(capacity * RING_LINES);
    this.quantity = new Uint8Array(capacity * RING_LINES);
    this.unitPrice = new Float64Array(capacity * RING_LINES);
  }

  add(eventIndex: number, rank: number, timeMs: number, sequence: number, codes: readonly number[], items: readonly BenchLineItem[]): void {
    const slot = this.head;
    this.head = (this.head + 1) % this.capacity;
    if (this.size < this.capacity) this.size += 1;
    this.eventIndex[slot] = eventIndex;
    this.rank[slot] = rank;
    this.timeMs[slot] = timeMs;
    this.sequence[slot] = sequence;
    this.returned[slot] = 0;
    this.lineCount[slot] = items.length;
    for (let line = 0; line < items.length; line++) {
      this.sku[slot * RING_LINES + line] = codes[line]!;
      this.quantity[slot * RING_LINES + line] = items[line]!.quantity;
      this.unitPrice[slot * RING_LINES + line] = items[line]!.unitPriceMinor;
    }
  }

  /** Physical slot of the logical position (0 = oldest kept). */
  slotOf(position: number): number {
    return (this.head - this.size + position + this.capacity) % this.capacity;
  }

  /** The first logical position whose time is at or after `timeMs` (size when none): times grow with position. */
  firstAtOrAfter(timeMs: number): number {
    let low = 0;
    let high = this.size;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.timeMs[this.slotOf(middle)]! >= timeMs) high = middle;
      else low = middle + 1;
    }
    return low;
  }
}

function skuOf(code: number): string {
  const category = CATEGORIES[Math.floor(code / SKU_CODE_BASE)]!;
  return `${category.code}-${code % SKU_CODE_BASE}`;
}

function basePoints(amountMinor: number, program: ProgramModel): number {
  return Math.floor((amountMinor * program.earnPoints) / program.earnPerAmountMinor);
}

/** A SKU always has the same price (ending in 99), derived from a hash of the SKU, not from the PRNG. */
function priceOf(category: Category, categoryIndex: number, skuNumber: number): number {
  let hash = Math.imul(categoryIndex * 1_000_003 + skuNumber, 0x9e3779b1) >>> 0;
  hash = Math.imul(hash ^ (hash >>> 15), 0x85ebca6b) >>> 0;
  const steps = Math.floor((category.priceMaxMinor - category.priceMinMinor) / 100) + 1;
  return category.priceMinMinor + (hash % steps) * 100;
}
