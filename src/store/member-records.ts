import { assert } from '../domain/assert.js';
import type { CurrencyState, Lot, MemberState, OrderCurrency, OrderLine, OrderRecord, PendingLot, RedemptionRecord, VoucherRecord } from '../domain/state.js';

/**
 * How a member's state is laid out in records: a small core record, plus one
 * record per order, redemption and voucher.
 *
 * Why: those three lists are bounded but long for busy members (orders kept
 * through the return window, redemptions through the cancel window, vouchers
 * until they expire: hundreds each), and together they are most of the bytes.
 * Written as one record, every batch that touched the member re-encoded them
 * all: the bench measured 9 KB and 180 µs of encoding per event. Split, a batch
 * writes the core (which lists the items' keys, in order) and only the items
 * that changed.
 *
 * What changed is found by identity: domain states are immutable, so an item
 * the domain did not touch is the same object in the state before and after.
 * `base` must therefore be the state as the store last wrote it (or read it).
 *
 * The core is written on every batch that touches the member, so its busiest
 * parts are stored flat: each currency's lots as one list of numbers, and each
 * list of item keys as one string. msgpack writes a map key per field and a
 * header per string: for a busy member (60 lots, 200 item keys) the bench
 * measured 34 µs to encode the core as objects and a third of that flat.
 */

export type ItemKind = 'o' | 'r' | 'v';
export type MemberItem = OrderRecord | RedemptionRecord | VoucherRecord;

/**
 * A currency as stored: lots as [expiresAtMs, points, ...] and pending lots as
 * [releaseAtMs, expiresAtMs, points, ...]. Records written before this was
 * flat hold Lot and PendingLot objects; both are read.
 */
export interface StoredCurrency extends Omit<CurrencyState, 'lots' | 'pendingLots'> {
  readonly lots: readonly (number | null)[] | readonly Lot[];
  readonly pendingLots: readonly (number | null)[] | readonly PendingLot[];
}

/**
 * A list of item keys as stored: the keys joined by newlines, or the array
 * itself when it is shorter than two or a key holds a newline (keys are
 * event-supplied text). Records written before this hold arrays.
 */
export type StoredKeys = readonly string[] | string;

/**
 * The core record: the state with its three item lists replaced by their
 * keys, in list order, under the lists' own names. Why the same names: the
 * core is the state spread with four fields overridden, which V8 copies in
 * about a microsecond; taking the lists out by rest destructuring measured 7
 * to 11 µs per core. Cores written before keep the keys under orderKeys,
 * redemptionKeys and voucherKeys; both are read.
 */
export interface MemberCore extends Omit<MemberState, 'orders' | 'redemptions' | 'vouchers' | 'currencies'> {
  readonly currencies: Readonly<Record<string, StoredCurrency>>;
  readonly orders?: StoredKeys;
  readonly redemptions?: StoredKeys;
  readonly vouchers?: StoredKeys;
  readonly orderKeys?: StoredKeys;
  readonly redemptionKeys?: StoredKeys;
  readonly voucherKeys?: StoredKeys;
  /**
   * The due time the due index holds for this member (null: none), so the
   * next write knows which index key to replace. Absent in records written
   * before the due index: the partition's first full sweep pass sets it.
   */
  readonly dueMs?: number | null;
}

/** A core's keys of one item list, wherever its format keeps them. */
export function coreKeys(core: MemberCore, kind: ItemKind): StoredKeys {
  const keys = kind === 'o' ? (core.orders ?? core.orderKeys) : kind === 'r' ? (core.redemptions ?? core.redemptionKeys) : (core.vouchers ?? core.voucherKeys);
  assert(keys !== undefined, `member records: the core of ${core.memberId} lists no ${kind} keys`);
  return keys;
}


/**
 * An order as stored: one flat list of values instead of nested objects
 * (an order holds a map per line and a record per currency; as objects the
 * bench measured them at a fifth of the store's encoding time):
 *   [ORDER_ROW, orderId, eventId, atMs, closesAtMs, releaseAtMs, amountMinor, currencyCode,
 *    refundedMinor, spendClawedMinor, tierBucketKey,
 *    currencyCount, (currency, earned, qualifyingEarned, clawed, qualifyingClawed, pendingLeft) × count,
 *    lineCount, (sku, quantity, returned, valueMinor, pointCount, (currencyId, points) × pointCount) × count]
 * Orders written before this (or holding fields this codec does not know) are objects.
 */
export type StoredOrder = readonly (string | number)[];
/** First value of a stored order row: its layout version. */
const ORDER_ROW = 1;
const ORDER_FIELDS = 12;
const ORDER_CURRENCY_FIELDS = 6;
const ORDER_LINE_FIELDS = 5;

export type StoredItem = MemberItem | StoredOrder;

export interface ItemChanges {
  readonly core: MemberCore;
  readonly puts: readonly (readonly [kind: ItemKind, key: string, item: StoredItem])[];
  readonly removes: readonly (readonly [kind: ItemKind, key: string])[];
}

const orderKey = (order: OrderRecord): string => order.orderId;
const redemptionKey = (redemption: RedemptionRecord): string => redemption.eventId;
const voucherKey = (voucher: VoucherRecord): string => voucher.code;

/** The records to write for `state`, given `base`, the state the store holds now (undefined: none). */
export function memberChanges(state: MemberState, base: MemberState | undefined, dueMs: number | null): ItemChanges {
  assert(base === undefined || base.memberId === state.memberId, 'member records: base of another member');
  const puts: [ItemKind, string, StoredItem][] = [];
  const removes: [ItemKind, string][] = [];
  const core: MemberCore = {
    ...state,
    currencies: storedCurrencies(state.currencies),
    orders: listChanges('o', state.orders, base?.orders, orderKey, puts, removes),
    redemptions: listChanges('r', state.redemptions, base?.redemptions, redemptionKey, puts, removes),
    vouchers: listChanges('v', state.vouchers, base?.vouchers, voucherKey, puts, removes),
    dueMs,
  };
  return { core, puts, removes };
}

/**
 * The core as stored since the core row: one flat list of values in a fixed
 * order (CORE_FIELDS below) instead of a map, with every nested record
 * flattened too (currencies, buckets, counters as [key, value, ...]).
 *
 * Why: the core is written on every batch that touches a member, and as a map
 * of maps msgpack writes every field name of every nested object each time:
 * the encode probe (bench/store/encode-probe.ts) measured about 11 µs to pack
 * a 3-event member's 780-byte core in the actor's mix of shapes. A row packs
 * numbers and strings only. A state with a field this codec does not know (a
 * newer domain) is written as the map core, which is always read too, as are
 * cores written before the row.
 */
export type StoredCore = MemberCore | readonly unknown[];

/** First value of a core row: its layout version. */
const CORE_ROW = 1;
/** The state's fields a core row holds (the required ones: the optional ones are counted apart). */
const REQUIRED_FIELDS = 21;
const CURRENCY_FIELDS = 8;
const ENGAGEMENT_FIELDS = 9;
/** Bits of the row's presence mask, one per optional state field. */
const HAS_ENGAGEMENT = 1;
const HAS_PAID = 2;
const HAS_BADGES = 4;
const HAS_BADGE_PROGRESS = 8;
const HAS_DIGEST = 16;
const CORE_ROW_LENGTH = 29;

/**
 * The records to write for `state`, given `base` (as memberChanges), with the
 * core as a row when the state holds only fields the row knows.
 */
export function memberRecords(state: MemberState, base: MemberState | undefined, dueMs: number | null): { readonly core: StoredCore; readonly puts: ItemChanges['puts']; readonly removes: ItemChanges['removes'] } {
  assert(base === undefined || base.memberId === state.memberId, 'member records: base of another member');
  const puts: [ItemKind, string, StoredItem][] = [];
  const removes: [ItemKind, string][] = [];
  const orders = listChanges('o', state.orders, base?.orders, orderKey, puts, removes);
  const redemptions = listChanges('r', state.redemptions, base?.redemptions, redemptionKey, puts, removes);
  const vouchers = listChanges('v', state.vouchers, base?.vouchers, voucherKey, puts, removes);
  const core =
    coreRow(state, orders, redemptions, vouchers, dueMs) ??
    ({ ...state, currencies: storedCurrencies(state.currencies), orders, redemptions, vouchers, dueMs } satisfies MemberCore);
  return { core, puts, removes };
}

/** The core row of `state`, or undefined when it holds a field (or a nested field) the row does not know. */
export function coreRow(state: MemberState, orders: StoredKeys, redemptions: StoredKeys, vouchers: StoredKeys, dueMs: number | null): unknown[] | undefined {
  let fields = 0;
  for (const _key in state) fields += 1;
  let present = 0;
  let optional = 0;
  if ('engagement' in state) {
    optional += 1;
    if (state.engagement !== undefined) present |= HAS_ENGAGEMENT;
  }
  if ('paid' in state) {
    optional += 1;
    if (state.paid !== undefined) present |= HAS_PAID;
  }
  if ('badges' in state) {
    optional += 1;
    if (state.badges !== undefined) present |= HAS_BADGES;
  }
  if ('badgeProgress' in state) {
    optional += 1;
    if (state.badgeProgress !== undefined) present |= HAS_BADGE_PROGRESS;
  }
  if ('digestAtMs' in state) {
    optional += 1;
    if (state.digestAtMs !== undefined) present |= HAS_DIGEST;
  }
  // An optional field present but undefined would come back absent: the map core keeps it exactly.
  if (fields !== REQUIRED_FIELDS + optional || optional !== popCount(present)) return undefined;
  const grace = state.tierGrace;
  let tierGrace: unknown[] | null = null;
  if (grace !== null) {
    if (fieldCount(grace) !== 2 || grace.untilMs === undefined || grace.targetTierId === undefined) return undefined;
    tierGrace = [grace.untilMs, grace.targetTierId];
  }
  const tierBuckets: number[] = new Array<number>(state.tierBuckets.length * 2);
  for (let index = 0; index < state.tierBuckets.length; index++) {
    const bucket = state.tierBuckets[index]!;
    if (fieldCount(bucket) !== 2 || bucket.key === undefined || bucket.amount === undefined) return undefined;
    tierBuckets[2 * index] = bucket.key;
    tierBuckets[2 * index + 1] = bucket.amount;
  }
  const currencies = currencyValues(state.currencies);
  if (currencies === undefined) return undefined;
  const activityCounts: unknown[] = [];
  for (const id in state.activityCounts) {
    const counter = state.activityCounts[id]!;
    if (fieldCount(counter) !== 2 || counter.periodStartMs === undefined || counter.count === undefined) return undefined;
    activityCounts.push(id, counter.periodStartMs, counter.count);
  }
  const promotionUsage: unknown[] = [];
  for (const id in state.promotionUsage) {
    const usage = state.promotionUsage[id]!;
    if (fieldCount(usage) !== 2 || usage.points === undefined || usage.uses === undefined) return undefined;
    promotionUsage.push(id, usage.points, usage.uses);
  }
  const challenges: unknown[] = [];
  for (const id in state.challenges) {
    const challenge = state.challenges[id]!;
    if (fieldCount(challenge) !== 2 || challenge.timesMs === undefined || challenge.completions === undefined) return undefined;
    challenges.push(id, challenge.completions, challenge.timesMs);
  }
  let engagement: unknown[] | null = null;
  if (state.engagement !== undefined) {
    const e = state.engagement;
    engagement = [e.orders, e.revenueMinor, e.redeemedOrders, e.redeemedRevenueMinor, e.returns, e.returnedMinor, e.donations, e.lastOrderMs, e.inactiveAtMs];
    if (fieldCount(e) !== ENGAGEMENT_FIELDS || engagement.includes(undefined)) return undefined;
  }
  const row: unknown[] = [
    CORE_ROW,
    state.memberId,
    state.status,
    state.enrolledAtMs,
    flatRecord(state.attributes),
    state.segments,
    state.tierId,
    state.tierSinceMs,
    state.tierReviewAtMs,
    tierGrace,
    tierBuckets,
    currencies,
    state.ledgerSeq,
    state.lastActivityMs,
    state.eventCount,
    orders,
    redemptions,
    vouchers,
    activityCounts,
    promotionUsage,
    challenges,
    flatRecord(state.benefitsIssued),
    present,
    engagement,
    // Rare and nested (a plan, progress with optional fields): kept as they are.
    state.paid ?? null,
    state.badges === undefined ? null : flatRecord(state.badges),
    state.badgeProgress ?? null,
    state.digestAtMs ?? null,
    dueMs,
  ];
  assert(row.length === CORE_ROW_LENGTH, 'member records: a core row has a value per field');
  // A required field missing (its count taken by a field the row does not know): the map core keeps the state as it is.
  if (row.includes(undefined)) return undefined;
  return row;
}

function popCount(bits: number): number {
  let count = 0;
  for (let rest = bits; rest !== 0; rest &= rest - 1) count += 1;
  return count;
}

function fieldCount(value: object): number {
  let fields = 0;
  for (const _key in value) fields += 1;
  return fields;
}

function flatRecord(record: Readonly<Record<string, unknown>>): unknown[] {
  const flat: unknown[] = [];
  for (const key in record) flat.push(key, record[key]);
  return flat;
}

function recordOf<T>(flat: readonly unknown[]): Record<string, T> {
  assert(flat.length % 2 === 0, 'member records: a flat record holds pairs');
  const record: Record<string, T> = {};
  for (let index = 0; index < flat.length; index += 2) record[flat[index] as string] = flat[index + 1] as T;
  return record;
}

/** A currency's lots as flat rows: [expiresAtMs, points, ...] and [releaseAtMs, expiresAtMs, points, ...]. */
function flatLots(currency: CurrencyState): { lots: (number | null)[]; pendingLots: (number | null)[] } {
  const lots: (number | null)[] = new Array<number | null>(currency.lots.length * 2);
  for (let index = 0; index < currency.lots.length; index++) {
    const lot = currency.lots[index]!;
    lots[2 * index] = lot.expiresAtMs;
    lots[2 * index + 1] = lot.points;
  }
  const pendingLots: (number | null)[] = new Array<number | null>(currency.pendingLots.length * 3);
  for (let index = 0; index < currency.pendingLots.length; index++) {
    const lot = currency.pendingLots[index]!;
    pendingLots[3 * index] = lot.releaseAtMs;
    pendingLots[3 * index + 1] = lot.expiresAtMs;
    pendingLots[3 * index + 2] = lot.points;
  }
  return { lots, pendingLots };
}

/** Currencies as [id, spendable, pending, qualifying, debt, lifetimeEarned, noticeThroughMs, lots, pendingLots, ...]. */
function currencyValues(currencies: Readonly<Record<string, CurrencyState>>): unknown[] | undefined {
  const values: unknown[] = [];
  for (const currencyId in currencies) {
    const currency = currencies[currencyId]!;
    if (fieldCount(currency) !== CURRENCY_FIELDS || currency.noticeThroughMs === undefined || currency.lifetimeEarned === undefined) return undefined;
    const { lots, pendingLots } = flatLots(currency);
    values.push(currencyId, currency.spendable, currency.pending, currency.qualifying, currency.debt, currency.lifetimeEarned, currency.noticeThroughMs, lots, pendingLots);
  }
  return values;
}

/** A stored core as the map form the readers take: a row decoded, a map core (written before the row, or by the fallback) as it is. */
export function decodeCore(stored: StoredCore): MemberCore {
  if (!Array.isArray(stored)) return stored as MemberCore;
  const row = stored as readonly unknown[];
  assert(row[0] === CORE_ROW, `member records: unknown stored core layout ${String(row[0])}`);
  assert(row.length === CORE_ROW_LENGTH, 'member records: a core row of the wrong length');
  const grace = row[9] as readonly unknown[] | null;
  const buckets = row[10] as readonly number[];
  assert(buckets.length % 2 === 0, 'member records: flat tier buckets hold pairs');
  const tierBuckets: { key: number; amount: number }[] = new Array(buckets.length / 2);
  for (let index = 0; index < tierBuckets.length; index++) tierBuckets[index] = { key: buckets[2 * index]!, amount: buckets[2 * index + 1]! };
  const currencyRow = row[11] as readonly unknown[];
  assert(currencyRow.length % 9 === 0, 'member records: flat currencies hold nine values each');
  const currencies: Record<string, StoredCurrency> = {};
  for (let at = 0; at < currencyRow.length; at += 9) {
    currencies[currencyRow[at] as string] = {
      spendable: currencyRow[at + 1] as number,
      pending: currencyRow[at + 2] as number,
      qualifying: currencyRow[at + 3] as number,
      debt: currencyRow[at + 4] as number,
      lifetimeEarned: currencyRow[at + 5] as number,
      lots: currencyRow[at + 7] as (number | null)[],
      pendingLots: currencyRow[at + 8] as (number | null)[],
      noticeThroughMs: currencyRow[at + 6] as number,
    };
  }
  const triples = <T>(flat: readonly unknown[], make: (second: unknown, third: unknown) => T): Record<string, T> => {
    assert(flat.length % 3 === 0, 'member records: a flat counter record holds triples');
    const record: Record<string, T> = {};
    for (let at = 0; at < flat.length; at += 3) record[flat[at] as string] = make(flat[at + 1], flat[at + 2]);
    return record;
  };
  const present = row[22] as number;
  const core: Record<string, unknown> = {
    memberId: row[1],
    status: row[2],
    enrolledAtMs: row[3],
    attributes: recordOf<string>(row[4] as readonly unknown[]),
    segments: row[5],
    tierId: row[6],
    tierSinceMs: row[7],
    tierReviewAtMs: row[8],
    tierGrace: grace === null ? null : { untilMs: grace[0], targetTierId: grace[1] },
    tierBuckets,
    currencies,
    ledgerSeq: row[12],
    lastActivityMs: row[13],
    eventCount: row[14],
    orders: row[15],
    redemptions: row[16],
    vouchers: row[17],
    activityCounts: triples(row[18] as readonly unknown[], (periodStartMs, count) => ({ periodStartMs, count })),
    promotionUsage: triples(row[19] as readonly unknown[], (points, uses) => ({ points, uses })),
    challenges: triples(row[20] as readonly unknown[], (completions, timesMs) => ({ timesMs, completions })),
    benefitsIssued: recordOf<number>(row[21] as readonly unknown[]),
  };
  if ((present & HAS_ENGAGEMENT) !== 0) {
    const e = row[23] as readonly unknown[];
    assert(e.length === ENGAGEMENT_FIELDS, 'member records: stored engagement of the wrong length');
    core.engagement = {
      orders: e[0],
      revenueMinor: e[1],
      redeemedOrders: e[2],
      redeemedRevenueMinor: e[3],
      returns: e[4],
      returnedMinor: e[5],
      donations: e[6],
      lastOrderMs: e[7],
      inactiveAtMs: e[8],
    };
  }
  if ((present & HAS_PAID) !== 0) core.paid = row[24];
  if ((present & HAS_BADGES) !== 0) core.badges = recordOf<number>(row[25] as readonly unknown[]);
  if ((present & HAS_BADGE_PROGRESS) !== 0) core.badgeProgress = row[26];
  if ((present & HAS_DIGEST) !== 0) core.digestAtMs = row[27];
  core.dueMs = row[28];
  return core as unknown as MemberCore;
}

/**
 * The stored key list of each item list this module wrote or read: a list the
 * domain left untouched is the same array in the next state, so its keys are
 * not derived and joined again (most members' redemptions and vouchers, and
 * everyone's orders in a batch without a purchase).
 */
const storedKeysOf = new WeakMap<readonly MemberItem[], StoredKeys>();

function listChanges<T extends MemberItem>(
  kind: ItemKind,
  items: readonly T[],
  baseItems: readonly T[] | undefined,
  keyOf: (item: T) => string,
  puts: [ItemKind, string, StoredItem][],
  removes: [ItemKind, string][],
): StoredKeys {
  if (baseItems === items) {
    // The list itself is untouched: no item record changes.
    const known = storedKeysOf.get(items);
    if (known !== undefined) return known;
  }
  const stored = storedKeys(itemKeys(items, baseItems, keyOf, kind, puts, removes));
  storedKeysOf.set(items, stored);
  return stored;
}

function itemKeys<T extends MemberItem>(
  items: readonly T[],
  baseItems: readonly T[] | undefined,
  keyOf: (item: T) => string,
  kind: ItemKind,
  puts: [ItemKind, string, StoredItem][],
  removes: [ItemKind, string][],
): string[] {
  const keys: string[] = new Array<string>(items.length);
  for (let index = 0; index < items.length; index++) keys[index] = keyOf(items[index]!);
  if (baseItems === items) return keys;
  const base = baseItems ?? [];
  // The domain never reorders a list: it appends, inserts, replaces and
  // removes. So the unchanged items (the very objects of the base) appear in
  // the same order in both lists, and one walk over both finds the rest.
  // Written keys as a list, not a Set: a batch writes one or two items of a
  // list, and two Sets per changed list were a visible share of the allocations.
  const putKeys: string[] = [];
  const left: T[] = [];
  let next = 0;
  for (let index = 0; index < items.length; index++) {
    const item = items[index]!;
    const found = base.indexOf(item, next);
    if (found === -1) {
      puts.push([kind, keys[index]!, kind === 'o' ? storedOrder(item as OrderRecord) : item]);
      putKeys.push(keys[index]!);
      continue;
    }
    for (let skipped = next; skipped < found; skipped++) left.push(base[skipped]!);
    next = found + 1;
  }
  for (let skipped = next; skipped < base.length; skipped++) left.push(base[skipped]!);
  if (putKeys.length === 0 && left.length === 0) return keys;
  // The domain keeps keys unique per member (order ids, event ids, voucher
  // codes); only a written item can break that, so only written keys are checked.
  for (const key of putKeys) assert(keys.indexOf(key) === keys.lastIndexOf(key), `member records: duplicate ${kind} key ${key}`);
  // Base items no longer in the list left it, unless a changed item took their key.
  for (const item of left) {
    const key = keyOf(item);
    if (!putKeys.includes(key)) removes.push([kind, key]);
  }
  return keys;
}

function storedCurrencies(currencies: Readonly<Record<string, CurrencyState>>): Record<string, StoredCurrency> {
  const stored: Record<string, StoredCurrency> = {};
  for (const currencyId in currencies) {
    const currency = currencies[currencyId]!;
    const { lots, pendingLots } = flatLots(currency);
    stored[currencyId] = { ...currency, lots, pendingLots };
  }
  return stored;
}

function joinCurrencies(stored: Readonly<Record<string, StoredCurrency>>): Record<string, CurrencyState> {
  const currencies: Record<string, CurrencyState> = {};
  for (const currencyId in stored) {
    const currency = stored[currencyId]!;
    currencies[currencyId] = { ...currency, lots: joinLots(currency.lots), pendingLots: joinPendingLots(currency.pendingLots) };
  }
  return currencies;
}

const isFlat = (list: readonly unknown[]): boolean => list.length === 0 || typeof list[0] !== 'object' || list[0] === null;

function joinLots(stored: StoredCurrency['lots']): Lot[] {
  if (!isFlat(stored)) return stored as Lot[];
  const flat = stored as readonly (number | null)[];
  assert(flat.length % 2 === 0, 'member records: a flat lot list holds pairs');
  const lots: Lot[] = new Array<Lot>(flat.length / 2);
  for (let index = 0; index < lots.length; index++) lots[index] = { expiresAtMs: flat[2 * index]!, points: flat[2 * index + 1] as number };
  return lots;
}

function joinPendingLots(stored: StoredCurrency['pendingLots']): PendingLot[] {
  if (!isFlat(stored)) return stored as PendingLot[];
  const flat = stored as readonly (number | null)[];
  assert(flat.length % 3 === 0, 'member records: a flat pending lot list holds triples');
  const lots: PendingLot[] = new Array<PendingLot>(flat.length / 3);
  for (let index = 0; index < lots.length; index++) {
    lots[index] = { releaseAtMs: flat[3 * index] as number, expiresAtMs: flat[3 * index + 1]!, points: flat[3 * index + 2] as number };
  }
  return lots;
}

function storedKeys(keys: readonly string[]): StoredKeys {
  if (keys.length < 2) return keys;
  for (const key of keys) if (key.includes('\n')) return keys;
  return keys.join('\n');
}

function joinKeys(keys: StoredKeys): readonly string[] {
  return typeof keys === 'string' ? keys.split('\n') : keys;
}

/** An order as stored (flat), or as it is when it has a field this codec does not know. */
export function storedOrder(order: OrderRecord): StoredItem {
  let fields = 0;
  for (const _key in order) fields += 1;
  if (fields !== ORDER_FIELDS) return order;
  const row: (string | number)[] = [
    ORDER_ROW,
    order.orderId,
    order.eventId,
    order.atMs,
    order.closesAtMs,
    order.releaseAtMs,
    order.amountMinor,
    order.currencyCode,
    order.refundedMinor,
    order.spendClawedMinor,
    order.tierBucketKey,
    order.currencies.length,
  ];
  for (const currency of order.currencies) {
    let currencyFields = 0;
    for (const _key in currency) currencyFields += 1;
    if (currencyFields !== ORDER_CURRENCY_FIELDS) return order;
    row.push(currency.currency, currency.earned, currency.qualifyingEarned, currency.clawed, currency.qualifyingClawed, currency.pendingLeft);
  }
  row.push(order.lines.length);
  for (const line of order.lines) {
    let lineFields = 0;
    for (const _key in line) lineFields += 1;
    if (lineFields !== ORDER_LINE_FIELDS) return order;
    row.push(line.sku, line.quantity, line.returned, line.valueMinor, 0);
    const countAt = row.length - 1;
    let points = 0;
    for (const currencyId in line.points) {
      row.push(currencyId, line.points[currencyId]!);
      points += 1;
    }
    row[countAt] = points;
  }
  return row;
}

/** The item a stored record holds: a flat order row decoded, anything else as it is. */
export function joinItem(kind: ItemKind, stored: StoredItem): MemberItem {
  if (kind !== 'o' || !Array.isArray(stored)) return stored as MemberItem;
  const row = stored as StoredOrder;
  assert(row[0] === ORDER_ROW, `member records: unknown stored order layout ${String(row[0])}`);
  let at = 11;
  const currencyCount = row[at++] as number;
  const currencies: OrderCurrency[] = new Array<OrderCurrency>(currencyCount);
  for (let index = 0; index < currencyCount; index++) {
    currencies[index] = {
      currency: row[at] as string,
      earned: row[at + 1] as number,
      qualifyingEarned: row[at + 2] as number,
      clawed: row[at + 3] as number,
      qualifyingClawed: row[at + 4] as number,
      pendingLeft: row[at + 5] as number,
    };
    at += ORDER_CURRENCY_FIELDS;
  }
  const lineCount = row[at++] as number;
  const lines: OrderLine[] = new Array<OrderLine>(lineCount);
  for (let index = 0; index < lineCount; index++) {
    const sku = row[at] as string;
    const quantity = row[at + 1] as number;
    const returned = row[at + 2] as number;
    const valueMinor = row[at + 3] as number;
    const pointCount = row[at + 4] as number;
    at += ORDER_LINE_FIELDS;
    const points: Record<string, number> = {};
    for (let point = 0; point < pointCount; point++) {
      points[row[at] as string] = row[at + 1] as number;
      at += 2;
    }
    lines[index] = { sku, quantity, returned, valueMinor, points };
  }
  assert(at === row.length, 'member records: a stored order row has values left over');
  return {
    orderId: row[1] as string,
    eventId: row[2] as string,
    atMs: row[3] as number,
    closesAtMs: row[4] as number,
    releaseAtMs: row[5] as number,
    amountMinor: row[6] as number,
    currencyCode: row[7] as string,
    refundedMinor: row[8] as number,
    spendClawedMinor: row[9] as number,
    tierBucketKey: row[10] as number,
    currencies,
    lines,
  };
}

/** Rebuilds the state from its core and item records (`itemOf` returns undefined for a missing record). */
export function joinMember(core: MemberCore, itemOf: (kind: ItemKind, key: string) => StoredItem | undefined): MemberState {
  const { orderKeys: _orderKeys, redemptionKeys: _redemptionKeys, voucherKeys: _voucherKeys, orders: _orders, redemptions: _redemptions, vouchers: _vouchers, dueMs: _dueMs, currencies, ...rest } = core;
  const list = <T extends MemberItem>(kind: ItemKind, keys: StoredKeys): T[] => {
    const items = joinKeys(keys).map((key) => {
      const stored = itemOf(kind, key);
      assert(stored !== undefined, `member records: ${core.memberId} lacks its ${kind} record ${key}`);
      return joinItem(kind, stored) as T;
    });
    storedKeysOf.set(items, keys);
    return items;
  };
  return {
    ...rest,
    currencies: joinCurrencies(currencies),
    orders: list<OrderRecord>('o', coreKeys(core, 'o')),
    redemptions: list<RedemptionRecord>('r', coreKeys(core, 'r')),
    vouchers: list<VoucherRecord>('v', coreKeys(core, 'v')),
  };
}
