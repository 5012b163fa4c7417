import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { compileProgram, nextDueMs, sweepMember, tierMeasure, type LedgerEntry, type Program } from '../../../src/domain/index.js';
import { loadProgram, makeProgram, Member } from './helpers.js';

/**
 * Issue item 12 and the properties: over random sequences of events and
 * sweeps, every balance equals the sum of its ledger entries (the Member
 * harness checks it after every step, and that no input state is mutated),
 * no balance goes negative where the policy forbids it, returns never take
 * back more than an order earned, the tier never lags the measure, and the
 * same events always give the same state.
 *
 * Idempotency of a re-sent event id is the store's job (the actor records
 * processed ids in the same transaction as the state); what the domain
 * guarantees, and what is checked here, is that replaying the same sequence
 * from scratch gives identical state, ledger and outcomes.
 */

const SKUS = ['RUNNER', 'SOCKS', 'COFFEE', 'TV', 'SHIRT'] as const;
const CATEGORY: Record<(typeof SKUS)[number], string> = { RUNNER: 'shoes', SOCKS: 'apparel', COFFEE: 'food', TV: 'electronics', SHIRT: 'apparel' };
const KINDS = [
  'purchase', 'purchase', 'purchase', 'purchase',
  'return', 'return', 'refund', 'redeem', 'redeem', 'spend_all', 'cancel', 'activity', 'credit', 'debit', 'voucher', 'sweep', 'sweep', 'unenroll', 'enroll',
] as const;

const stepArbitrary = fc.record({
  gapHours: fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 0, max: 48 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 24 * 120 }) }),
  lateHours: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 24 * 20 }) }),
  kind: fc.constantFrom(...KINDS),
  amountMinor: fc.integer({ min: 0, max: 300_000 }),
  pick: fc.nat(),
  quantity: fc.integer({ min: 1, max: 4 }),
  channel: fc.constantFrom(undefined, 'app', 'web'),
  partner: fc.constantFrom(undefined, 'outlet-berlin', 'grand-hotels', 'swift-cars'),
  items: fc.array(
    fc.record({ sku: fc.constantFrom(...SKUS), quantity: fc.integer({ min: 1, max: 4 }), unitPriceMinor: fc.integer({ min: 0, max: 60_000 }) }),
    { maxLength: 4 },
  ),
});
type Step = typeof stepArbitrary extends fc.Arbitrary<infer T> ? T : never;

const START_MS = Date.parse('2026-10-01T08:00:00Z');

/** Replays steps for one member; references (orders, redemptions, vouchers) point at earlier ones. */
/**
 * `withSweeps` false drops the sweeps; then amounts must not depend on the
 * state between steps (a sweep changes what is spendable earlier), so
 * `stateFree` makes redemption amounts depend on the step alone.
 */
function run(program: Program, steps: readonly Step[], withSweeps = true, stateFree = false): Member {
  const member = new Member(program);
  const orders: { id: string; skus: string[] }[] = [];
  const redemptions: string[] = [];
  const currencies = program.currencies.map((currency) => currency.id);
  const rewards = program.redemption.rewards ?? [];
  let timeMs = START_MS;
  member.apply({ id: 'enroll-0', type: 'enroll', occurredAt: new Date(timeMs).toISOString(), segments: ['vip'] });
  steps.forEach((step, index) => {
    timeMs += step.gapHours * 3_600_000;
    const occurredAt = new Date(timeMs - step.lateHours * 3_600_000).toISOString();
    const id = `e${index}`;
    const pickFrom = <T,>(list: readonly T[]): T | undefined => (list.length === 0 ? undefined : list[step.pick % list.length]);
    switch (step.kind) {
      case 'purchase': {
        const items = step.items.map((line) => ({ ...line, category: CATEGORY[line.sku] }));
        const extra: Record<string, unknown> = {};
        if (items.length > 0) extra.items = items;
        if (step.channel !== undefined) extra.channel = step.channel;
        if (step.partner !== undefined) extra.partner = step.partner;
        const amountMinor = items.length > 0 && step.pick % 2 === 0 ? items.reduce((sum, line) => sum + line.quantity * line.unitPriceMinor, 0) : step.amountMinor;
        member.apply({ id, type: 'purchase', occurredAt, amountMinor, currency: program.currency, ...extra });
        orders.push({ id, skus: items.map((line) => line.sku) });
        return;
      }
      case 'return': {
        // Mostly recent orders (inside the window), SKUs they contain, sometimes more than bought.
        const order = pickFrom(orders.slice(-4));
        if (order === undefined) return;
        const sku = order.skus.length > 0 ? order.skus[step.pick % order.skus.length]! : SKUS[step.pick % SKUS.length]!;
        member.apply({ id, type: 'return', occurredAt, orderId: order.id, lines: [{ sku, quantity: step.quantity }] });
        return;
      }
      case 'refund': {
        const order = pickFrom(orders.slice(-4));
        if (order === undefined) return;
        member.apply({ id, type: 'return', occurredAt, orderId: order.id, amountMinor: 1 + (step.amountMinor % 50_000) });
        return;
      }
      case 'redeem': {
        const reward = pickFrom(rewards);
        const currency = reward?.currency ?? program.earn.currency ?? currencies[0]!;
        const spendable = member.state?.currencies[currency]?.spendable ?? 0;
        const points = reward?.points ?? 1 + (step.amountMinor % Math.max(1, step.pick % 3 === 0 || stateFree ? 800 : spendable));
        member.apply({ id, type: 'redemption', occurredAt, rewardId: reward?.id ?? 'gift', points, currency });
        redemptions.push(id);
        return;
      }
      case 'spend_all': {
        // Spending everything before a return is what makes a shortfall.
        const currency = program.earn.currency ?? currencies[0]!;
        const spendable = member.state?.currencies[currency]?.spendable ?? 0;
        if (spendable > 0 && rewards.length === 0 && !stateFree) member.apply({ id, type: 'redemption', occurredAt, rewardId: 'all', points: spendable, currency });
        return;
      }
      case 'cancel': {
        const redemptionId = pickFrom(redemptions);
        if (redemptionId !== undefined) member.apply({ id, type: 'redemption_cancel', occurredAt, redemptionId });
        return;
      }
      case 'activity': {
        const rule = pickFrom(program.activities);
        if (rule === undefined) return;
        const extra = rule.customType === undefined ? {} : { customType: rule.customType };
        member.apply({ id, type: 'activity', occurredAt, activity: rule.activity, ...extra });
        return;
      }
      case 'credit':
      case 'debit': {
        const currency = pickFrom(currencies)!;
        const qualifying = step.pick % 3 === 0 && program.currencies.find((candidate) => candidate.id === currency)!.qualifying;
        member.apply({
          id, type: 'adjustment', occurredAt, direction: step.kind, points: 1 + (step.amountMinor % 700), currency,
          reason: 'property', operator: 'fast-check', qualifying,
        });
        return;
      }
      case 'voucher': {
        // Only vouchers still valid at the event: the same choice whether or not a sweep pruned the rest.
        const atMs = Date.parse(occurredAt);
        const voucher = pickFrom((member.state?.vouchers ?? []).filter((candidate) => candidate.expiresAtMs > atMs));
        member.apply({ id, type: 'voucher_redeem', occurredAt, code: voucher?.code ?? 'NONE-0' });
        return;
      }
      case 'sweep':
        if (withSweeps && member.state !== undefined) member.sweep(new Date(timeMs).toISOString());
        return;
      case 'unenroll':
        if (step.pick % 8 === 0) member.apply({ id, type: 'unenroll', occurredAt });
        return;
      case 'enroll':
        member.apply({ id, type: 'enroll', occurredAt, segments: step.pick % 2 === 0 ? ['vip'] : [] });
        return;
    }
  });
  return member;
}

const floorProgram = makeProgram({
  currencies: [{ id: 'points', expiry: { kind: 'calendar', period: 'quarter', periodsAfter: 2 }, expiringSoonDays: 20 }],
  earn: {
    pendingDays: 7,
    rules: [
      { id: 'shoes', when: { categories: ['shoes'] }, award: { kind: 'multiplier', percent: 250 } },
      { id: 'socks', when: { skus: ['SOCKS'] }, award: { kind: 'bonus', points: 7, per: 'unit' } },
      { id: 'web', when: { channels: ['web'] }, award: { kind: 'bonus', points: 13 } },
    ],
  },
  tierQualification: { window: { kind: 'rolling_months', months: 2 }, downgrade: 'one_step', graceDays: 10 },
  returns: { windowDays: 20, shortfall: 'floor', ordersMax: 5 },
  promotions: [
    {
      id: 'autumn', name: 'Autumn', startsAt: '2026-10-01T00:00:00Z', endsAt: '2027-03-01T00:00:00Z',
      award: { kind: 'multiplier', percent: 300 }, budget: { perMember: { points: 900 }, global: { points: 5_000, uses: 40 } },
    },
  ],
  activities: [{ id: 'review', activity: 'review', points: 30, qualifying: true, cap: { count: 2, period: 'week' } }],
  challenges: [{ id: 'two', name: 'Two', kind: 'purchase_count', count: 2, withinDays: 10, repeatable: true }],
  benefits: [{ id: 'two-voucher', name: 'V', trigger: { kind: 'challenge_completed', challengeId: 'two' }, issue: { kind: 'voucher', validDays: 20 } }],
});

const negativeProgram = makeProgram({
  currencies: [{ id: 'points', expiry: { kind: 'inactivity', months: 2 }, expiringSoonDays: 10 }, { id: 'miles', qualifying: false, expiry: { kind: 'rolling', months: 3 } }],
  earn: { rules: [{ id: 'partner-miles', when: { partners: ['swift-cars'] }, award: { kind: 'bonus', points: 40 }, currency: 'miles' }] },
  tierQualification: { window: { kind: 'calendar_year' }, downgrade: 'to_supported' },
  returns: { windowDays: 30, shortfall: 'negative' },
  redemption: { cancelWindowDays: 5 },
  membership: { unenrollPolicy: 'keep' },
});

const debtProgram = makeProgram({
  currencies: [{ id: 'points', expiry: { kind: 'rolling', months: 2 } }],
  earn: { rules: [{ id: 'coffee', when: { skus: ['COFFEE'] }, award: { kind: 'bonus', points: 25, per: 'unit' } }] },
  tierQualification: { window: { kind: 'lifetime' } },
  returns: { windowDays: 40, shortfall: 'debt' },
  redemption: { cancelWindowDays: 10 },
});

const PROGRAMS: readonly [string, Program][] = [
  ['debt', debtProgram],
  ['retail (debt)', loadProgram('retail')],
  ['travel', loadProgram('travel')],
  ['floor', floorProgram],
  ['negative', negativeProgram],
  ['simple', loadProgram('simple')],
];

const sequences = fc.array(stepArbitrary, { minLength: 10, maxLength: 50 });

function clawbackWithinEarned(ledger: readonly LedgerEntry[]): void {
  const earned = new Map<string, number>();
  const clawed = new Map<string, number>();
  for (const entry of ledger) {
    if (entry.reference === undefined) continue;
    const key = `${entry.reference}/${entry.currency}`;
    if (entry.kind === 'earn' && entry.balance !== 'qualifying') earned.set(key, (earned.get(key) ?? 0) + entry.points);
    if (entry.kind === 'clawback' && entry.balance !== 'qualifying') clawed.set(key, (clawed.get(key) ?? 0) - entry.points);
    if (entry.kind === 'debt' && entry.balance === 'debt') clawed.set(key, (clawed.get(key) ?? 0) + entry.points);
  }
  for (const [key, points] of clawed) expect(points, key).toBeLessThanOrEqual(earned.get(key) ?? 0);
}

describe.each(PROGRAMS)('properties over random event sequences: %s', (_name, program) => {
  const compiled = compileProgram(program);

  it('balances equal ledger sums after every step; policy floors hold; returns stay within earnings; tiers never lag', () => {
    fc.assert(
      fc.property(sequences, (steps) => {
        const member = run(program, steps); // the harness checks the ledger invariant after every step
        const state = member.state;
        if (state === undefined) return;
        for (const [currencyId, currency] of Object.entries(state.currencies)) {
          if (compiled.shortfall !== 'negative') expect(currency.spendable, currencyId).toBeGreaterThanOrEqual(0);
          expect(currency.pending).toBeGreaterThanOrEqual(0);
          expect(currency.debt).toBeGreaterThanOrEqual(0);
          if (compiled.shortfall !== 'debt') expect(currency.debt).toBe(0);
        }
        for (const order of state.orders) {
          for (const entry of order.currencies) {
            expect(entry.clawed).toBeLessThanOrEqual(entry.earned);
            expect(entry.qualifyingClawed).toBeLessThanOrEqual(entry.qualifyingEarned);
          }
        }
        clawbackWithinEarned(member.ledger);
        if (compiled.returns !== null) expect(state.orders.length).toBeLessThanOrEqual(compiled.returns.ordersMax);
        const supported = compiled.tiers.filter((tier) => tier.threshold <= tierMeasure(state)).at(-1)!;
        if (state.status === 'active') expect(compiled.tierById.get(state.tierId)!.index).toBeGreaterThanOrEqual(supported.index);
      }),
      { numRuns: 60 },
    );
  });

  it('the same events give the same state, ledger and outcomes', () => {
    fc.assert(
      fc.property(sequences, (steps) => {
        const first = run(program, steps);
        const second = run(program, steps);
        expect(second.state).toEqual(first.state);
        expect(second.ledger).toEqual(first.ledger);
        expect(second.outcomes).toEqual(first.outcomes);
      }),
      { numRuns: 25 },
    );
  });

  it('a sweep only does early what the next event would have done (events in order)', () => {
    fc.assert(
      fc.property(sequences, (drawn) => {
        const steps = drawn.map((step) => ({ ...step, lateHours: 0 }));
        const swept = run(program, steps, true, true);
        const unswept = run(program, steps, false, true);
        const endIso = new Date(START_MS + steps.reduce((sum, step) => sum + step.gapHours, 0) * 3_600_000 + 86_400_000).toISOString();
        for (const member of [swept, unswept]) if (member.state !== undefined) member.sweep(endIso);
        // Expiry notices are the sweep's own news; everything else must match.
        const comparable = (member: Member) =>
          member.state === undefined
            ? undefined
            : { ...member.state, currencies: Object.fromEntries(Object.entries(member.state.currencies).map(([id, currency]) => [id, { ...currency, noticeThroughMs: 0 }])) };
        expect(comparable(swept)).toEqual(comparable(unswept));
      }),
      { numRuns: 25 },
    );
  });

  it('nextDueMs is exact: a sweep just before it changes nothing, a sweep at it changes the member', () => {
    fc.assert(
      fc.property(sequences, (drawn) => {
        const member = run(program, drawn.map((step) => ({ ...step, lateHours: 0 })));
        const state = member.state;
        if (state === undefined) return;
        const lastMs = Math.max(START_MS, ...member.ledger.map((entry) => entry.occurredAtMs), ...member.outcomes.map((outcome) => outcome.occurredAtMs));
        const settled = sweepMember(state, lastMs, program).state;
        const dueMs = nextDueMs(settled, program);
        if (dueMs === null) {
          expect(sweepMember(settled, lastMs + 5 * 365 * 86_400_000, program).state).toBe(settled);
          return;
        }
        if (dueMs - 1 > lastMs) expect(sweepMember(settled, dueMs - 1, program).state).toBe(settled);
        expect(sweepMember(settled, Math.max(dueMs, lastMs), program).state).not.toBe(settled);
      }),
      { numRuns: 40 },
    );
  });

  it('state, ledger and outcomes are plain data: they survive msgpack and JSON unchanged', () => {
    fc.assert(
      fc.property(sequences, (steps) => {
        const member = run(program, steps);
        expect(unpack(pack(member.state))).toEqual(member.state);
        expect(JSON.parse(JSON.stringify(member.state))).toEqual(member.state);
        expect(JSON.parse(JSON.stringify(member.outcomes))).toEqual(member.outcomes);
        expect(unpack(pack(member.ledger))).toEqual(member.ledger);
      }),
      { numRuns: 15 },
    );
  });

  it('the wallet accounts for every spendable point and stays consistent with the state', () => {
    fc.assert(
      fc.property(sequences, (steps) => {
        const member = run(program, steps);
        if (member.state === undefined) return;
        const lastTime = Math.max(...member.ledger.map((entry) => entry.occurredAtMs), START_MS);
        const wallet = member.wallet(new Date(lastTime).toISOString());
        for (const view of wallet.currencies) {
          expect(view.pending).toBe(view.pendingReleases.reduce((sum, release) => sum + release.points, 0));
          const dated = view.expiring.reduce((sum, item) => sum + item.points, 0);
          expect(dated).toBeLessThanOrEqual(Math.max(0, view.spendable));
        }
      }),
      { numRuns: 20 },
    );
  });
});

/** Guards the generator itself: with a fixed seed, the interesting paths really are exercised. */
describe('the random sequences reach the paths that matter', () => {
  const expected: Record<string, readonly string[]> = {
    debt: ['ledger:debt:debt', 'ledger:debt_repayment:debt', 'ledger:clawback:spendable', 'ledger:redeem_cancel:spendable', 'ledger:expire:spendable'],
    'retail (debt)': ['ledger:clawback:pending', 'ledger:release:spendable', 'voucher_redeemed', 'ledger:qualifying_lapse:qualifying', 'benefit'],
    travel: ['ledger:clawback:spendable', 'rejected:REWARD_NOT_ALLOWED', 'ledger:activity:spendable'],
    floor: ['ledger:clawback:spendable', 'ledger:expire:spendable', 'tier', 'rejected:ACTIVITY_CAP_REACHED'],
    negative: ['ledger:clawback:spendable', 'points_expired'],
    simple: ['ledger:earn:spendable', 'rejected:RETURNS_DISABLED'],
  };
  it.each(PROGRAMS)('%s', (name, program) => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(sequences, (steps) => {
        const member = run(program, steps);
        for (const outcome of member.outcomes) seen.add(outcome.kind === 'rejected' ? `rejected:${outcome.code}` : outcome.kind);
        for (const entry of member.ledger) seen.add(`ledger:${entry.kind}:${entry.balance}`);
      }),
      { numRuns: 60, seed: 20261123 },
    );
    for (const path of expected[name] ?? []) expect(seen, path).toContain(path);
  });
});

