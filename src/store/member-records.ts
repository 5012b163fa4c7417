import { assert } from '../domain/assert.js';
import type { CurrencyState, Lot, MemberState, OrderRecord, PendingLot, RedemptionRecord, VoucherRecord } from '../domain/state.js';

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

/** The core record: the state without its three lists, which it names by key, in list order. */
export interface MemberCore extends Omit<MemberState, 'orders' | 'redemptions' | 'vouchers' | 'currencies'> {
  readonly currencies: Readonly<Record<string, StoredCurrency>>;
  readonly orderKeys: StoredKeys;
  readonly redemptionKeys: StoredKeys;
  readonly voucherKeys: StoredKeys;
  /**
   * The due time the due index holds for this member (null: none), so the
   * next write knows which index key to replace. Absent in records written
   * before the due index: the partition's first full sweep pass sets it.
   */
  readonly dueMs?: number | null;
}

export interface ItemChanges {
  readonly core: MemberCore;
  readonly puts: readonly (readonly [kind: ItemKind, key: string, item: MemberItem])[];
  readonly removes: readonly (readonly [kind: ItemKind, key: string])[];
}

const orderKey = (order: OrderRecord): string => order.orderId;
const redemptionKey = (redemption: RedemptionRecord): string => redemption.eventId;
const voucherKey = (voucher: VoucherRecord): string => voucher.code;

/** The records to write for `state`, given `base`, the state the store holds now (undefined: none). */
export function memberChanges(state: MemberState, base: MemberState | undefined, dueMs: number | null): ItemChanges {
  assert(base === undefined || base.memberId === state.memberId, 'member records: base of another member');
  const puts: [ItemKind, string, MemberItem][] = [];
  const removes: [ItemKind, string][] = [];
  const { orders, redemptions, vouchers, currencies, ...rest } = state;
  const core: MemberCore = {
    ...rest,
    currencies: storedCurrencies(currencies),
    orderKeys: listChanges('o', orders, base?.orders, orderKey, puts, removes),
    redemptionKeys: listChanges('r', redemptions, base?.redemptions, redemptionKey, puts, removes),
    voucherKeys: listChanges('v', vouchers, base?.vouchers, voucherKey, puts, removes),
    dueMs,
  };
  return { core, puts, removes };
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
  puts: [ItemKind, string, MemberItem][],
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
  puts: [ItemKind, string, MemberItem][],
  removes: [ItemKind, string][],
): string[] {
  const keys: string[] = new Array<string>(items.length);
  for (let index = 0; index < items.length; index++) keys[index] = keyOf(items[index]!);
  if (baseItems === items) return keys;
  const base = baseItems ?? [];
  // The domain never reorders a list: it appends, inserts, replaces and
  // removes. So the unchanged items (the very objects of the base) appear in
  // the same order in both lists, and one walk over both finds the rest.
  const putKeys = new Set<string>();
  const left: T[] = [];
  let next = 0;
  for (let index = 0; index < items.length; index++) {
    const item = items[index]!;
    const found = base.indexOf(item, next);
    if (found === -1) {
      puts.push([kind, keys[index]!, item]);
      putKeys.add(keys[index]!);
      continue;
    }
    for (let skipped = next; skipped < found; skipped++) left.push(base[skipped]!);
    next = found + 1;
  }
  for (let skipped = next; skipped < base.length; skipped++) left.push(base[skipped]!);
  if (putKeys.size === 0 && left.length === 0) return keys;
  // The domain keeps keys unique per member (order ids, event ids, voucher
  // codes); only a written item can break that, so only written keys are checked.
  const seen = new Set<string>();
  for (const key of keys) {
    if (!putKeys.has(key)) continue;
    assert(!seen.has(key), `member records: duplicate ${kind} key ${key}`);
    seen.add(key);
  }
  // Base items no longer in the list left it, unless a changed item took their key.
  for (const item of left) {
    const key = keyOf(item);
    if (!putKeys.has(key)) removes.push([kind, key]);
  }
  return keys;
}

function storedCurrencies(currencies: Readonly<Record<string, CurrencyState>>): Record<string, StoredCurrency> {
  const stored: Record<string, StoredCurrency> = {};
  for (const currencyId in currencies) {
    const currency = currencies[currencyId]!;
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

/** Rebuilds the state from its core and item records (`itemOf` returns undefined for a missing record). */
export function joinMember(core: MemberCore, itemOf: (kind: ItemKind, key: string) => MemberItem | undefined): MemberState {
  const { orderKeys, redemptionKeys, voucherKeys, dueMs: _dueMs, currencies, ...rest } = core;
  const list = <T extends MemberItem>(kind: ItemKind, keys: StoredKeys): T[] => {
    const items = joinKeys(keys).map((key) => {
      const item = itemOf(kind, key);
      assert(item !== undefined, `member records: ${core.memberId} lacks its ${kind} record ${key}`);
      return item as T;
    });
    storedKeysOf.set(items, keys);
    return items;
  };
  return {
    ...rest,
    currencies: joinCurrencies(currencies),
    orders: list<OrderRecord>('o', orderKeys),
    redemptions: list<RedemptionRecord>('r', redemptionKeys),
    vouchers: list<VoucherRecord>('v', voucherKeys),
  };
}
