import { assert, assertSafeInteger } from './assert.js';
import type { CompiledProgram } from './compiled.js';
import type { DomainPorts } from './ports.js';
import type {
  BudgetUsage,
  Decision,
  CurrencyState,
  LedgerBalance,
  LedgerEntry,
  LedgerKind,
  Lot,
  MemberState,
  OrderRecord,
  Outcome,
  PendingLot,
} from './state.js';

/**
 * A decision in progress. The input state is never mutated: the top-level
 * object is copied once, and each nested part (a currency, the order list,
 * a counter record) is copied the first time it is written. That keeps an
 * event's cost proportional to what it changes, not to the member's size,
 * and lets a rejection hand back the untouched input.
 */

export type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export interface MutableCurrency extends Mutable<Omit<CurrencyState, 'lots' | 'pendingLots'>> {
  lots: Lot[];
  pendingLots: PendingLot[];
}

type ListKey = 'orders' | 'redemptions' | 'vouchers' | 'tierBuckets' | 'segments';
type RecordKey = 'activityCounts' | 'promotionUsage' | 'challenges' | 'benefitsIssued' | 'attributes';
type Writable<K extends ListKey> = MemberState[K] extends readonly (infer T)[] ? T[] : never;
type WritableRecord<K extends RecordKey> = MemberState[K] extends Readonly<Record<string, infer T>> ? Record<string, T> : never;

export interface Work {
  readonly program: CompiledProgram;
  readonly ports: DomainPorts | null;
  readonly original: MemberState;
  readonly state: Mutable<MemberState>;
  /** Cause of every ledger entry and outcome. */
  readonly eventId: string;
  /** The event time (or the sweep's now). */
  readonly atMs: number;
  readonly ledger: LedgerEntry[];
  readonly outcomes: Outcome[];
  readonly budgetUsage: BudgetUsage[];
  /** Set by every write; a sweep that wrote nothing returns its input. */
  changed: boolean;
  /** Currencies copied for writing, in first-touch order (for balance outcomes). */
  readonly touched: string[];
  /** Bit per list or record already copied (a bitmask: no Set per event on the hot path). */
  copied: number;
  currenciesCopied: boolean;
}

const COPY_BIT: Readonly<Record<ListKey | RecordKey, number>> = {
  orders: 1,
  redemptions: 2,
  vouchers: 4,
  tierBuckets: 8,
  segments: 16,
  activityCounts: 32,
  promotionUsage: 64,
  challenges: 128,
  benefitsIssued: 256,
  attributes: 512,
};

/** Whether this work holds its own (writable) copy of a list: until the work ends, that copy may still change. */
export function listCopied(work: Work, key: ListKey): boolean {
  return (work.copied & COPY_BIT[key]) !== 0;
}

/** Marks a part as already private to this work (it was replaced wholesale). */
export function markCopied(work: Work, key: ListKey | RecordKey): void {
  work.copied |= COPY_BIT[key];
}

export function startWork(
  program: CompiledProgram,
  state: MemberState,
  eventId: string,
  atMs: number,
  ports: DomainPorts | null,
): Work {
  assertSafeInteger(atMs, 'atMs');
  return {
    program,
    ports,
    original: state,
    state: { ...state },
    eventId,
    atMs,
    ledger: [],
    outcomes: [],
    budgetUsage: [],
    changed: false,
    touched: [],
    copied: 0,
    currenciesCopied: false,
  };
}

const EMPTY_CURRENCY: CurrencyState = Object.freeze({
  spendable: 0,
  pending: 0,
  qualifying: 0,
  debt: 0,
  lifetimeEarned: 0,
  lots: Object.freeze([]) as readonly Lot[],
  pendingLots: Object.freeze([]) as readonly PendingLot[],
  noticeThroughMs: 0,
});

/** A member's currency for reading; members hold only the currencies they have touched. */
export function readCurrency(state: MemberState, currencyId: string): CurrencyState {
  return Object.hasOwn(state.currencies, currencyId) ? state.currencies[currencyId]! : EMPTY_CURRENCY;
}

/**
 * A currency copied for writing. A member may still hold a currency a newer
 * program dropped: it keeps expiring and can be forfeited, it just earns nothing.
 */
export function writeCurrency(work: Work, currencyId: string): MutableCurrency {
  work.changed = true;
  if (!work.currenciesCopied) {
    work.state.currencies = { ...work.state.currencies };
    work.currenciesCopied = true;
  }
  if (work.touched.includes(currencyId)) return work.state.currencies[currencyId] as MutableCurrency;
  const source = readCurrency(work.original, currencyId);
  const copy: MutableCurrency = { ...source, lots: source.lots.slice(), pendingLots: source.pendingLots.slice() };
  (work.state.currencies as Record<string, CurrencyState>)[currencyId] = copy;
  work.touched.push(currencyId);
  return copy;
}

export function writeList<K extends ListKey>(work: Work, key: K): Writable<K> {
  work.changed = true;
  if ((work.copied & COPY_BIT[key]) === 0) {
    (work.state as Record<string, unknown>)[key] = (work.original[key] as readonly unknown[]).slice();
    work.copied |= COPY_BIT[key];
  }
  // The caller may change the list in any way: its order-id set (if any) cannot follow.
  if (key === 'orders') orderIdsOf.delete(work.state.orders);
  return work.state[key] as unknown as Writable<K>;
}

/**
 * Order-id sets of long order lists, so that a purchase's duplicate check
 * costs one lookup instead of a walk over up to `returns.ordersMax` orders
 * (string compares of ids that share long prefixes). A set belongs to one
 * array and holds exactly its order ids: it is built on the first lookup and
 * moved to the array derived from it by appendToList and dropListHead, which
 * keep it exact; writeList, after which the caller may change the list in any
 * way, drops it. The input array of a work loses its set when it moves (the
 * next lookup on it builds it again): nothing is ever shared by two arrays.
 */
const orderIdsOf = new WeakMap<readonly OrderRecord[], Set<string>>();
/** Below this many orders a walk is cheaper than a set. */
const ORDER_IDS_MIN = 16;

/** Whether `orders` holds an order with this id. */
export function hasOrderId(orders: readonly OrderRecord[], orderId: string): boolean {
  if (orders.length < ORDER_IDS_MIN) {
    for (let index = 0; index < orders.length; index++) if (orders[index]!.orderId === orderId) return true;
    return false;
  }
  let ids = orderIdsOf.get(orders);
  if (ids === undefined) {
    ids = new Set<string>();
    for (let index = 0; index < orders.length; index++) ids.add(orders[index]!.orderId);
    orderIdsOf.set(orders, ids);
  }
  return ids.has(orderId);
}

/** Moves the order-id set of `from` (if it has one) to `to`, its derived copy. */
function moveOrderIds(from: readonly OrderRecord[], to: readonly OrderRecord[]): Set<string> | undefined {
  const ids = orderIdsOf.get(from);
  if (ids === undefined) return undefined;
  orderIdsOf.delete(from);
  orderIdsOf.set(to, ids);
  return ids;
}

/**
 * Appends to a list, copying it first if this work has not yet: the copy is
 * made with the item in one exact-size allocation (a slice() then push()
 * would grow the fresh copy's backing store by half again, and the state
 * would keep that slack).
 */
export function appendToList<K extends ListKey>(work: Work, key: K, item: Writable<K>[number]): Writable<K> {
  work.changed = true;
  if ((work.copied & COPY_BIT[key]) === 0) {
    // concat of a one-item array appends the item itself, whatever it is.
    (work.state as Record<string, unknown>)[key] = (work.original[key] as readonly unknown[]).concat([item]);
    work.copied |= COPY_BIT[key];
    if (key === 'orders') moveOrderIds(work.original.orders, work.state.orders)?.add((item as OrderRecord).orderId);
  } else {
    (work.state[key] as unknown as unknown[]).push(item);
    if (key === 'orders') orderIdsOf.get(work.state.orders)?.add((item as OrderRecord).orderId);
  }
  return work.state[key] as unknown as Writable<K>;
}

/** Drops the first `count` items of a list, copying only the rest if this work has not copied it yet. */
export function dropListHead<K extends ListKey>(work: Work, key: K, count: number): Writable<K> {
  work.changed = true;
  if ((work.copied & COPY_BIT[key]) === 0) {
    const before = work.original[key] as readonly unknown[];
    (work.state as Record<string, unknown>)[key] = before.slice(count);
    work.copied |= COPY_BIT[key];
    if (key === 'orders') forgetOrderIds(moveOrderIds(work.original.orders, work.state.orders), before as readonly OrderRecord[], count);
  } else {
    const removed = (work.state[key] as unknown as unknown[]).splice(0, count);
    if (key === 'orders') forgetOrderIds(orderIdsOf.get(work.state.orders), removed as OrderRecord[], removed.length);
  }
  return work.state[key] as unknown as Writable<K>;
}

/** Takes the ids of the first `count` orders out of a set (ids are unique in a list: a purchase with a known order id is refused). */
function forgetOrderIds(ids: Set<string> | undefined, dropped: readonly OrderRecord[], count: number): void {
  if (ids === undefined) return;
  for (let index = 0; index < count; index++) ids.delete(dropped[index]!.orderId);
}

export function writeRecord<K extends RecordKey>(work: Work, key: K): WritableRecord<K> {
  work.changed = true;
  if ((work.copied & COPY_BIT[key]) === 0) {
    (work.state as Record<string, unknown>)[key] = { ...(work.original[key] as object) };
    work.copied |= COPY_BIT[key];
  }
  return work.state[key] as unknown as WritableRecord<K>;
}

export interface EntryDetails {
  readonly promotionId?: string;
  readonly reference?: string;
  readonly reason?: string;
  readonly operator?: string;
  /** When the change took effect, if not the event time (an expiry at midnight). */
  readonly occurredAtMs?: number;
}

/**
 * The only way a balance changes: the balance and its ledger entry move
 * together, so the ledger invariant holds by construction. The lot fields are
 * separate arguments (not merged into `details`) so the hot earn path
 * allocates nothing but the entry itself.
 */
export function post(
  work: Work,
  currency: MutableCurrency,
  currencyId: string,
  balance: LedgerBalance,
  points: number,
  kind: LedgerKind,
  ruleId: string,
  details?: EntryDetails,
  lotExpiresAtMs?: number | null,
  releaseAtMs?: number,
): void {
  assertSafeInteger(points, 'ledger points');
  assert(points !== 0, 'a ledger entry must change a balance');
  currency[balance] += points;
  assertSafeInteger(currency[balance], 'balance');
  work.state.ledgerSeq += 1;
  const entry: Mutable<LedgerEntry> = {
    seq: work.state.ledgerSeq,
    memberId: work.state.memberId,
    eventId: work.eventId,
    kind,
    balance,
    currency: currencyId,
    points,
    ruleId,
    occurredAtMs: details?.occurredAtMs ?? work.atMs,
  };
  if (details !== undefined) {
    if (details.promotionId !== undefined) entry.promotionId = details.promotionId;
    if (details.reference !== undefined) entry.reference = details.reference;
    if (details.reason !== undefined) entry.reason = details.reason;
    if (details.operator !== undefined) entry.operator = details.operator;
  }
  if (lotExpiresAtMs !== undefined) entry.lotExpiresAtMs = lotExpiresAtMs;
  if (releaseAtMs !== undefined) entry.releaseAtMs = releaseAtMs;
  work.ledger.push(entry);
}

/** One balance outcome per currency whose balances moved, with the final figures. */
export function balanceOutcomes(work: Work): void {
  for (const currencyId of work.touched) {
    const before = readCurrency(work.original, currencyId);
    const after = readCurrency(work.state, currencyId);
    const delta = after.spendable - before.spendable;
    const pendingDelta = after.pending - before.pending;
    const qualifyingDelta = after.qualifying - before.qualifying;
    if (delta === 0 && pendingDelta === 0 && qualifyingDelta === 0 && after.debt === before.debt) continue;
    work.outcomes.push({
      kind: 'balance',
      eventId: work.eventId,
      memberId: work.state.memberId,
      occurredAtMs: work.atMs,
      currency: currencyId,
      delta,
      pendingDelta,
      qualifyingDelta,
      spendable: after.spendable,
      pending: after.pending,
      qualifying: after.qualifying,
      debt: after.debt,
      tierId: work.state.tierId,
    });
  }
}

/** A balance outcome of the first currency with nothing moved, for an accepted event that changed no balance. */
export function unchangedBalanceOutcome(work: Work): void {
  const currencyId = work.program.program.currencies[0]!.id;
  const current = readCurrency(work.state, currencyId);
  work.outcomes.push({
    kind: 'balance',
    eventId: work.eventId,
    memberId: work.state.memberId,
    occurredAtMs: work.atMs,
    currency: currencyId,
    delta: 0,
    pendingDelta: 0,
    qualifyingDelta: 0,
    spendable: current.spendable,
    pending: current.pending,
    qualifying: current.qualifying,
    debt: current.debt,
    tierId: work.state.tierId,
  });
}

export function finishDecision(work: Work): Decision {
  const decision: Mutable<Decision> = { state: work.state, ledger: work.ledger, outcomes: work.outcomes };
  if (work.budgetUsage.length > 0) decision.budgetUsage = work.budgetUsage;
  return decision;
}
