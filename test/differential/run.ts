import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import {
  applyEvent,
  createMemoryBudgets,
  globalBudgetLimits,
  programSchema,
  sweepMember,
  validateEvent,
  type DomainPorts,
  type MemberState,
  type Program,
} from '../../src/domain/index.js';
import { DAY, Model, type ModelEvent, type ModelMember } from './model.js';

/**
 * The differential run: a seeded generator of member events (and sweeps)
 * drives the engine's domain (applyEvent, sweepMember: no NATS, no store)
 * and the model side by side, and after every step compares the result code
 * and the member's balances, lots, pending lots, tier measure, tier, grace
 * and vouchers. Per member, time only moves forward (out-of-order events are
 * the property tests' business); 1 in 100 events lands exactly on a local
 * midnight, where return windows close and pending points are released.
 */

export function loadProgramFile(name: 'retail' | 'travel'): Program {
  const url = new URL(`../../config/programs/${name}.yaml`, import.meta.url);
  return programSchema.parse(parseYaml(readFileSync(url, 'utf8')));
}

/** mulberry32: small, fast, seeded. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

interface Catalog {
  readonly items: readonly { sku: string; category: string; min: number; max: number }[];
  readonly channels: readonly (string | undefined)[];
  readonly partners: readonly (string | undefined)[];
  readonly adjustMax: number;
  readonly amountScale: number;
}

const CATALOGS: Record<string, Catalog> = {
  retail: {
    items: [
      { sku: 'RUN-1', category: 'shoes', min: 4_000, max: 12_000 },
      { sku: 'TV-1', category: 'electronics', min: 20_000, max: 90_000 },
      { sku: 'SKU-COFFEE-1KG', category: 'food', min: 1_500, max: 1_500 },
      { sku: 'SHIRT', category: 'apparel', min: 1_999, max: 3_999 },
      { sku: 'SOCK', category: 'apparel', min: 333, max: 999 },
    ],
    channels: [undefined, 'app', 'web'],
    partners: [undefined, undefined, 'outlet-berlin'],
    adjustMax: 3_000,
    amountScale: 1,
  },
  travel: {
    items: [
      { sku: 'FLIGHT-E', category: 'economy', min: 9_000, max: 80_000 },
      { sku: 'FLIGHT-B', category: 'business', min: 100_000, max: 400_000 },
      { sku: 'FLIGHT-F', category: 'first', min: 300_000, max: 900_000 },
      { sku: 'LOUNGE-PASS', category: 'extras', min: 3_000, max: 3_000 },
    ],
    channels: [undefined, 'web'],
    partners: [undefined, undefined, 'grand-hotels', 'swift-cars'],
    adjustMax: 30_000,
    amountScale: 10,
  },
};

export interface RunOptions {
  readonly program: Program;
  readonly seed: number;
  readonly members: number;
  readonly events: number;
  readonly startMs?: number;
  /** Average gap between two events of the whole population. */
  readonly gapMs?: number;
}

export interface RunReport {
  readonly events: number;
  readonly sweeps: number;
  readonly rejected: Record<string, number>;
  readonly accepted: Record<string, number>;
  readonly tierChanges: number;
  /** Downgrades: both programs have grace days, so each one went through a grace period. */
  readonly tierDowngrades: number;
  readonly vouchersIssued: number;
}

interface MemberMemory {
  orders: { id: string; lines: { sku: string; quantity: number }[]; amount: number }[];
  redemptions: string[];
}

type Projection = unknown;

function projectEngine(state: MemberState | undefined, program: Program): Projection {
  if (state === undefined) return null;
  const currencies: unknown[] = [];
  for (const id of Object.keys(state.currencies).sort()) {
    const c = state.currencies[id]!;
    const lots = c.lots.map((lot) => [lot.expiresAtMs, lot.points]);
    const pending = c.pendingLots.map((lot) => [lot.releaseAtMs, lot.expiresAtMs, lot.points]).sort(byTuple);
    if (c.spendable === 0 && c.pending === 0 && c.qualifying === 0 && c.debt === 0 && c.lifetimeEarned === 0 && lots.length === 0) continue;
    currencies.push([id, c.spendable, c.pending, c.qualifying, c.debt, c.lifetimeEarned, lots, pending]);
  }
  return {
    status: state.status,
    tier: state.tierId,
    grace: state.tierGrace === null ? null : [state.tierGrace.untilMs, state.tierGrace.targetTierId],
    buckets: state.tierBuckets.map((bucket) => [bucket.key, bucket.amount]),
    currencies,
    vouchers: state.vouchers.map((v) => [v.code.slice(0, v.code.lastIndexOf('-')), v.benefitId, v.kind, v.issuedAtMs, v.expiresAtMs, v.redeemedAtMs]),
    tierId: program.tiers.some((tier) => tier.id === state.tierId),
  };
}

function projectModel(member: ModelMember | undefined, program: Program): Projection {
  if (member === undefined) return null;
  const currencies: unknown[] = [];
  for (const id of [...member.currencies.keys()].sort()) {
    const c = member.currencies.get(id)!;
    const lots = [...c.lots.entries()].sort((a, b) => (a[0] === null ? 1 : b[0] === null ? -1 : a[0] - b[0])).map(([expiry, points]) => [expiry, points]);
    const pending = [...c.pendingLots.values()].map((lot) => [lot.release, lot.expiry, lot.points]).sort(byTuple);
    if (c.spendable === 0 && c.pending === 0 && c.qualifying === 0 && c.debt === 0 && c.lifetime === 0 && lots.length === 0) continue;
    currencies.push([id, c.spendable, c.pending, c.qualifying, c.debt, c.lifetime, lots, pending]);
  }
  return {
    status: member.status,
    tier: program.tiers[member.tier]!.id,
    grace: member.grace === null ? null : [member.grace.until, program.tiers[member.grace.target]!.id],
    buckets: [...member.buckets.entries()].sort((a, b) => a[0] - b[0]).map(([key, amount]) => [key, amount]),
    currencies,
    vouchers: member.vouchers.map((v) => [v.prefix, v.benefitId, v.kind, v.issued, v.expires, v.redeemed]),
    tierId: true,
  };
}

function byTuple(a: unknown[], b: unknown[]): number {
  for (let index = 0; index < a.length; index++) {
    const x = (a[index] as number | null) ?? Number.MAX_SAFE_INTEGER;
    const y = (b[index] as number | null) ?? Number.MAX_SAFE_INTEGER;
    if (x !== y) return x - y;
  }
  return 0;
}

export class Mismatch extends Error {
  constructor(
    message: string,
    readonly engine: unknown,
    readonly model: unknown,
  ) {
    super(message);
  }
}

/** Runs the generator; throws a Mismatch at the first step where engine and model disagree. */
export function runDifferential(options: RunOptions): RunReport {
  const { program, seed } = options;
  const catalog = CATALOGS[program.id]!;
  const next = random(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  const between = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  const model = new Model(program);
  const ports: DomainPorts = { budgets: createMemoryBudgets(globalBudgetLimits(program)) };
  const engine = new Map<string, MemberState>();
  const memory = new Map<string, MemberMemory>();
  const earnCurrency = program.earn.currency ?? program.currencies[0]!.id;
  const otherCurrency = program.currencies.find((currency) => currency.id !== earnCurrency)?.id ?? earnCurrency;
  const rewards = program.redemption.rewards ?? [];
  const report = { events: 0, sweeps: 0, rejected: {} as Record<string, number>, accepted: {} as Record<string, number>, tierChanges: 0, tierDowngrades: 0, vouchersIssued: 0 };
  let t = options.startMs ?? Date.parse('2026-01-01T00:30:00Z');
  const gapMs = options.gapMs ?? 900_000;
  let serial = 0;
  let memberIndex = 0;

  for (let step = 0; step < options.events; step++) {
    // A few members are busy, most are occasional: long gaps reach inactivity expiry and downgrades.
    memberIndex = Math.floor(options.members * next() ** 1.7);
    const memberId = `m${memberIndex}`;
    t += Math.floor(-Math.log(1 - next()) * gapMs);
    if (next() < 0.01) t = model.calendar.dayStart(t) + DAY; // exactly a local midnight
    const mem = memory.get(memberId) ?? { orders: [], redemptions: [] };
    memory.set(memberId, mem);
    const before = engine.get(memberId);
    const at = new Date(t).toISOString();
    const id = `e${++serial}`;

    const roll = next();
    if (before !== undefined && roll < 0.07) {
      const decision = sweepMember(before, t, program);
      model.sweep(memberId, t);
      engine.set(memberId, decision.state);
      report.sweeps += 1;
      compare(`${program.id} step ${step} sweep of ${memberId} at ${at}`, decision.state);
      continue;
    }
    const modelMember = model.members.get(memberId);
    const event = makeEvent(id, at, before, modelMember, mem);
    const { engineEvent, modelEvent } = event;
    const validation = validateEvent({ memberId, ...engineEvent });
    if (!validation.ok) throw new Error(`generator made an invalid event: ${validation.reason} ${JSON.stringify(engineEvent)}`);
    const decision = applyEvent(before, validation.event, validation.occurredAtMs, program, ports);
    const rejected = decision.outcomes.find((outcome) => outcome.kind === 'rejected');
    const engineCode = rejected?.kind === 'rejected' ? rejected.code : null;
    const modelCode = model.apply(memberId, modelEvent, t);
    report.events += 1;
    const label = `${program.id} step ${step}: ${JSON.stringify(engineEvent)}`;
    if (engineCode !== modelCode) {
      throw new Mismatch(`${label}: result differs (engine ${engineCode}, model ${modelCode}; ${rejected?.kind === 'rejected' ? rejected.reason : ''})`, engineCode, modelCode);
    }
    const tally = engineCode === null ? report.accepted : report.rejected;
    const key = engineCode ?? engineEvent.type;
    tally[key] = (tally[key] ?? 0) + 1;
    for (const outcome of decision.outcomes) {
      if (outcome.kind === 'tier') report.tierChanges += 1;
      if (outcome.kind === 'tier' && outcome.direction === 'down') report.tierDowngrades += 1;
      if (outcome.kind === 'benefit') report.vouchersIssued += 1;
    }
    if (decision.state !== undefined) engine.set(memberId, decision.state);
    compare(label, decision.state);

    function compare(where: string, state: MemberState | undefined): void {
      const left = projectEngine(state, program);
      const right = projectModel(model.members.get(memberId), program);
      if (JSON.stringify(left) !== JSON.stringify(right)) throw new Mismatch(`${where}: the member differs`, left, right);
    }
  }
  return report;

  function makeEvent(
    id: string,
    at: string,
    state: MemberState | undefined,
    member: ModelMember | undefined,
    mem: MemberMemory,
  ): { engineEvent: Record<string, any> & { type: string }; modelEvent: ModelEvent } {
    const same = (event: Record<string, any> & { type: string }) => ({ engineEvent: event, modelEvent: { ...event, id } as ModelEvent });
    const base = { id, occurredAt: at };
    if (state === undefined && !program.membership.autoEnroll && next() < 0.9) return same({ ...base, type: 'enroll', segments: next() < 0.3 ? ['vip'] : [] });
    // An unenrolled member mostly comes back (refusals are tested, but they should not crowd out the rest).
    if (state?.status === 'unenrolled' && next() < 0.6) return same({ ...base, type: 'enroll' });
    const r = next();
    if (r < 0.36) {
      const count = between(0, 3);
      const lines = Array.from({ length: count }, () => {
        const item = pick(catalog.items);
        return { sku: item.sku, category: item.category, quantity: between(1, 3), unitPriceMinor: between(item.min, item.max) };
      });
      const total = lines.reduce((sum, line) => sum + line.quantity * line.unitPriceMinor, 0);
      const amountMinor = count === 0 ? between(0, 30_000 * catalog.amountScale) : next() < 0.2 ? Math.floor(total * 0.8) : total;
      const reuse = next() < 0.01 && mem.orders.length > 0;
      const orderId = reuse ? mem.orders[mem.orders.length - 1]!.id : `o-${id}`;
      if (!reuse) mem.orders.push({ id: orderId, lines: lines.map((line) => ({ sku: line.sku, quantity: line.quantity })), amount: amountMinor });
      if (mem.orders.length > 8) mem.orders.shift();
      const channel = pick(catalog.channels);
      const partner = pick(catalog.partners);
      return same({
        ...base,
        type: 'purchase',
        orderId,
        amountMinor,
        currency: next() < 0.005 ? 'GBP' : program.currency,
        ...(count > 0 ? { items: lines } : {}),
        ...(channel !== undefined ? { channel } : {}),
        ...(partner !== undefined ? { partner } : {}),
      });
    }
    if (r < 0.5) {
      const latest = mem.orders.length > 0 && next() < 0.6 ? mem.orders[mem.orders.length - 1]! : undefined;
      const order = latest ?? (mem.orders.length > 0 && next() < 0.95 ? pick(mem.orders) : { id: 'o-missing', lines: [], amount: 100 });
      if (order.lines.length > 0 && next() < 0.6) {
        const line = pick(order.lines);
        return same({ ...base, type: 'return', orderId: order.id, lines: [{ sku: line.sku, quantity: between(1, line.quantity + (next() < 0.1 ? 1 : 0)) }] });
      }
      const amountMinor = Math.max(1, next() < 0.3 ? order.amount : between(1, Math.max(1, Math.floor(order.amount / 2))));
      return same({ ...base, type: 'return', orderId: order.id, amountMinor });
    }
    if (r < 0.6) {
      const reward = rewards.length > 0 && next() < 0.95 ? pick(rewards) : { id: 'no-such-reward', points: 100, currency: undefined };
      const currency = reward.currency ?? earnCurrency;
      mem.redemptions.push(id);
      if (mem.redemptions.length > 4) mem.redemptions.shift();
      return same({ ...base, type: 'redemption', rewardId: reward.id, points: next() < 0.03 ? reward.points + 1 : reward.points, currency });
    }
    if (r < 0.65) {
      const redemptionId = mem.redemptions.length > 0 && next() < 0.9 ? pick(mem.redemptions) : 'r-missing';
      return same({ ...base, type: 'redemption_cancel', redemptionId });
    }
    if (r < 0.76) {
      const rule = next() < 0.95 ? pick(program.activities) : { activity: 'custom', customType: 'no_such_thing' };
      return same({ ...base, type: 'activity', activity: rule.activity, ...(rule.activity === 'custom' ? { customType: rule.customType } : {}) });
    }
    if (r < 0.86) {
      const direction = next() < 0.55 ? 'credit' : 'debit';
      const currency = next() < 0.85 ? earnCurrency : otherCurrency;
      const points = between(1, direction === 'credit' ? catalog.adjustMax : catalog.adjustMax / 2);
      return same({ ...base, type: 'adjustment', direction, points, currency, reason: 'test', operator: 'ops', ...(next() < 0.5 ? { qualifying: true } : {}) });
    }
    if (r < 0.92) {
      const count = member?.vouchers.length ?? 0;
      const index = Math.floor(next() * (count + 1));
      const code = state?.vouchers[index]?.code ?? 'NOPE-00000000000';
      // Named by what it is, not where: the event's own due step may drop expired vouchers before it.
      const voucher = member?.vouchers[index];
      const voucherKey = voucher === undefined ? 'none' : `${voucher.benefitId}|${voucher.issued}`;
      return { engineEvent: { ...base, type: 'voucher_redeem', code }, modelEvent: { ...base, type: 'voucher_redeem', voucherKey } };
    }
    if (r < 0.97) return same({ ...base, type: 'enroll', segments: next() < 0.3 ? ['vip'] : [] });
    if (r < 0.995) return same({ ...base, type: 'unenroll' });
    // Erasure is final: only occasional members (the upper half of the ids), and rarely.
    const occasional = memberIndex >= options.members / 2;
    return same({ ...base, type: occasional && next() < 0.1 ? 'erase' : 'enroll' });
  }
}
