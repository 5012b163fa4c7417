import { cumulative, Prng } from './prng.js';
import { ZipfSampler } from './zipf.js';

/**
 * Deterministic loyalty events for load tests: same options (seed, runId, ...)
 * give the same events, byte for byte once encoded.
 *
 * Only purchases exist in the engine's contract today; the mix is already a
 * weight table so returns, redemptions and activities can join it later
 * without changing callers.
 */

export const EVENT_KINDS = ['purchase', 'return', 'redemption', 'activity'] as const;
export type EventKind = (typeof EVENT_KINDS)[number];
/** Kinds this generator can produce now. */
export const GENERATED_KINDS: readonly EventKind[] = ['purchase'];

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
  amountMinor: number;
  currency: string;
  items: BenchLineItem[];
  channel: string;
}

export type BenchEvent = BenchPurchaseEvent;

export interface GeneratorOptions {
  seed: number;
  /** Part of every event id (`e<runId>-<index>`), so ids of different runs never collide. */
  runId: string;
  members: number;
  /** Member ids are `<memberPrefix><rank>`: a warm-up load uses another prefix to touch other members. */
  memberPrefix: string;
  /** Zipf exponent of member activity; 0 = uniform. */
  zipfExponent: number;
  /** Relative weights per kind; kinds the generator cannot produce yet are refused. */
  mix: Partial<Record<EventKind, number>>;
  /** Event time of the first event; later events are `eventSpacingMs` apart. */
  startAtMs: number;
  eventSpacingMs: number;
  currency: string;
  /** Weight of a basket with 1, 2, ... lines (the table's length is the maximum). */
  basketLineWeights: readonly number[];
}

export const DEFAULT_GENERATOR_OPTIONS: Omit<GeneratorOptions, 'runId'> = {
  seed: 1,
  members: 100_000,
  memberPrefix: 'm',
  zipfExponent: 1.0,
  mix: { purchase: 1 },
  startAtMs: Date.parse('2026-11-23T10:00:00.000Z'),
  eventSpacingMs: 10,
  currency: 'EUR',
  basketLineWeights: [30, 22, 16, 11, 8, 6, 4, 3],
};

interface Category {
  name: string;
  code: string;
  weight: number;
  priceMinMinor: number;
  priceMaxMinor: number;
  skus: number;
}

const CATEGORIES: readonly Category[] = [
  { name: 'grocery', code: 'GRO', weight: 30, priceMinMinor: 99, priceMaxMinor: 2_999, skus: 4_000 },
  { name: 'apparel', code: 'APP', weight: 15, priceMinMinor: 999, priceMaxMinor: 12_999, skus: 3_000 },
  { name: 'home', code: 'HOM', weight: 12, priceMinMinor: 499, priceMaxMinor: 29_999, skus: 2_000 },
  { name: 'beauty', code: 'BEA', weight: 12, priceMinMinor: 299, priceMaxMinor: 7_999, skus: 1_500 },
  { name: 'books', code: 'BOO', weight: 10, priceMinMinor: 499, priceMaxMinor: 4_999, skus: 5_000 },
  { name: 'toys', code: 'TOY', weight: 8, priceMinMinor: 499, priceMaxMinor: 9_999, skus: 1_000 },
  { name: 'sports', code: 'SPO', weight: 8, priceMinMinor: 999, priceMaxMinor: 19_999, skus: 1_000 },
  { name: 'electronics', code: 'ELE', weight: 5, priceMinMinor: 1_999, priceMaxMinor: 149_999, skus: 800 },
];
const CATEGORY_CUMULATIVE = cumulative(CATEGORIES.map((category) => category.weight));
const QUANTITY_CUMULATIVE = cumulative([70, 20, 7, 3]);
const CHANNELS = ['web', 'app', 'store'] as const;
const CHANNEL_CUMULATIVE = cumulative([45, 35, 20]);

export interface GeneratedEvent {
  index: number;
  kind: EventKind;
  /** Zipf rank of the member: 0 is the most active. */
  memberRank: number;
  event: BenchEvent;
}

export function memberIdOf(rank: number, prefix = 'm'): string {
  return `${prefix}${rank}`;
}

export function eventIdOf(runId: string, index: number): string {
  return `e${runId}-${index}`;
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
  if (!Number.isInteger(options.startAtMs)) throw new RangeError('startAtMs must be an integer');
  if (!Number.isInteger(options.eventSpacingMs) || options.eventSpacingMs < 0) throw new RangeError('eventSpacingMs must be an integer >= 0');
  if (!/^[A-Z]{3}$/.test(options.currency)) throw new RangeError(`currency must be an ISO 4217 code, got ${options.currency}`);
  if (options.basketLineWeights.length < 1) throw new RangeError('basketLineWeights needs at least one weight');
  let total = 0;
  for (const [kind, weight] of Object.entries(options.mix)) {
    if (!(EVENT_KINDS as readonly string[]).includes(kind)) throw new RangeError(`unknown event kind in mix: ${kind}`);
    if (weight === undefined || !Number.isFinite(weight) || weight < 0) throw new RangeError(`mix weight of ${kind} must be finite and >= 0`);
    if (weight > 0 && !GENERATED_KINDS.includes(kind as EventKind)) {
      throw new RangeError(`event kind "${kind}" is not generated yet (available: ${GENERATED_KINDS.join(', ')})`);
    }
    total += weight;
  }
  if (!(total > 0)) throw new RangeError('the event mix needs a positive weight');
}

/** Produces events one by one, in index order. */
export class EventGenerator {
  readonly options: GeneratorOptions;
  readonly members: ZipfSampler;
  private readonly prng: Prng;
  private readonly kinds: EventKind[];
  private readonly kindCumulative: number[];
  private readonly lineCumulative: number[];
  private readonly memberIds: (string | undefined)[];
  private nextIndex = 0;

  constructor(options: GeneratorOptions) {
    validateGeneratorOptions(options);
    this.options = options;
    this.prng = new Prng(options.seed);
    this.members = new ZipfSampler(options.members, options.zipfExponent);
    this.kinds = EVENT_KINDS.filter((kind) => (options.mix[kind] ?? 0) > 0);
    this.kindCumulative = cumulative(this.kinds.map((kind) => options.mix[kind] ?? 0));
    this.lineCumulative = cumulative(options.basketLineWeights);
    this.memberIds = new Array<string | undefined>(options.members);
  }

  memberId(rank: number): string {
    let id = this.memberIds[rank];
    if (id === undefined) {
      id = memberIdOf(rank, this.options.memberPrefix);
      this.memberIds[rank] = id;
    }
    return id;
  }

  next(): GeneratedEvent {
    const index = this.nextIndex++;
    // One kind draw per event even when the mix has one kind, so adding kinds later keeps the draw sequence shape.
    const kind = this.kinds[this.prng.pickWeighted(this.kindCumulative)]!;
    const memberRank = this.members.sample(this.prng);
    switch (kind) {
      case 'purchase':
        return { index, kind, memberRank, event: this.purchase(index, memberRank) };
      default:
        throw new Error(`event kind ${kind} is not generated yet`);
    }
  }

  private purchase(index: number, memberRank: number): BenchPurchaseEvent {
    const lines = this.prng.pickWeighted(this.lineCumulative) + 1;
    const items: BenchLineItem[] = [];
    let amountMinor = 0;
    for (let line = 0; line < lines; line++) {
      const categoryIndex = this.prng.pickWeighted(CATEGORY_CUMULATIVE);
      const category = CATEGORIES[categoryIndex]!;
      const skuNumber = this.prng.nextInt(1, category.skus);
      const quantity = this.prng.pickWeighted(QUANTITY_CUMULATIVE) + 1;
      const unitPriceMinor = priceOf(category, categoryIndex, skuNumber);
      amountMinor += quantity * unitPriceMinor;
      items.push({ sku: `${category.code}-${skuNumber}`, category: category.name, quantity, unitPriceMinor });
    }
    const channel = CHANNELS[this.prng.pickWeighted(CHANNEL_CUMULATIVE)]!;
    return {
      id: eventIdOf(this.options.runId, index),
      memberId: this.memberId(memberRank),
      type: 'purchase',
      occurredAt: new Date(this.options.startAtMs + index * this.options.eventSpacingMs).toISOString(),
      amountMinor,
      currency: this.options.currency,
      items,
      channel,
    };
  }
}

/** A SKU always has the same price (ending in 99), derived from a hash of the SKU, not from the PRNG. */
function priceOf(category: Category, categoryIndex: number, skuNumber: number): number {
  let hash = Math.imul(categoryIndex * 1_000_003 + skuNumber, 0x9e3779b1) >>> 0;
  hash = Math.imul(hash ^ (hash >>> 15), 0x85ebca6b) >>> 0;
  const steps = Math.floor((category.priceMaxMinor - category.priceMinMinor) / 100) + 1;
  return category.priceMinMinor + (hash % steps) * 100;
}
