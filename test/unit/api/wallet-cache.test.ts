import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildHttpServer } from '../../../src/api/http.js';
import { isoString, walletBody, walletJson, walletResponse } from '../../../src/api/views.js';
import { WalletCache } from '../../../src/api/wallet-cache.js';
import type { WalletRecords } from '../../../src/store/types.js';
import { parseProgramText } from '../../../src/config/program-file.js';
import { applyEvent, createMemoryBudgets, globalBudgetLimits, type LoyaltyEvent, type MemberState, type Program } from '../../../src/domain/index.js';
import { sweepMember } from '../../../src/domain/sweep.js';
import { walletStableUntilMs, walletView, walletViewStable } from '../../../src/domain/wallet.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { LmdbStore } from '../../../src/store/lmdb.js';
import { auth, fakeContext, FakeEngine, programText } from './fake-context.js';

/**
 * GET /wallet's body: written directly (walletBody), its view skipping a sweep
 * when nothing is due, and kept per member by WalletCache only while provably
 * current. Everything here is compared with the plain computation:
 * walletJson(walletResponse(walletView(state, program, now))) on the state as
 * it is now.
 */

const DAY_MS = 86_400_000;
const START_MS = Date.parse('2025-01-10T09:30:00Z');

/** A small deterministic generator (mulberry32). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const PROGRAMS = ['retail', 'travel', 'simple'] as const;
const programs = new Map<string, Program>(PROGRAMS.map((name) => [name, parseProgramText(programText(name))]));

/** A random event of a member at `atMs`, of every kind the wallet can show the effect of. */
function randomEvent(next: () => number, program: Program, state: MemberState | undefined, memberId: string, index: number, atMs: number): LoyaltyEvent {
  const base = { id: `e${index}`, memberId, occurredAt: new Date(atMs).toISOString() };
  const pick = next();
  const currencies = program.currencies?.map((currency) => currency.id) ?? ['points'];
  const currency = currencies[Math.floor(next() * currencies.length)] ?? 'points';
  if (state === undefined) return { ...base, type: 'enroll' } as LoyaltyEvent;
  if (pick < 0.5) return { ...base, type: 'purchase', amountMinor: 500 + Math.floor(next() * 120_000), currency: program.currency } as LoyaltyEvent;
  if (pick < 0.58 && state.orders.length > 0) {
    const order = state.orders[Math.floor(next() * state.orders.length)]!;
    return { ...base, type: 'return', orderId: order.orderId, amountMinor: 1 + Math.floor(next() * order.amountMinor), currency: program.currency } as LoyaltyEvent;
  }
  if (pick < 0.68) {
    const rewards = program.redemption.rewards ?? [];
    const reward = rewards[Math.floor(next() * rewards.length)];
    if (reward !== undefined) return { ...base, type: 'redemption', rewardId: reward.id, points: reward.points, currency: reward.currency ?? currency } as LoyaltyEvent;
  }
  if (pick < 0.72 && state.redemptions.length > 0) {
    return { ...base, type: 'redemption_cancel', redemptionId: state.redemptions[0]!.eventId } as LoyaltyEvent;
  }
  if (pick < 0.8 && state.vouchers.length > 0) {
    return { ...base, type: 'voucher_redeem', code: state.vouchers[Math.floor(next() * state.vouchers.length)]!.code } as LoyaltyEvent;
  }
  if (pick < 0.9) {
    return {
      ...base,
      type: 'adjustment',
      direction: next() < 0.7 ? 'credit' : 'debit',
      points: 1 + Math.floor(next() * 5_000),
      currency,
      reason: 'test',
      operator: 'tester',
      qualifying: next() < 0.5,
    } as LoyaltyEvent;
  }
  if (pick < 0.97) return { ...base, type: 'activity', activity: next() < 0.5 ? 'review' : 'referral' } as LoyaltyEvent;
  return { ...base, type: next() < 0.5 ? 'unenroll' : 'enroll' } as LoyaltyEvent;
}

/** Members with random histories (every state after each event), over about two years. */
function histories(program: Program, members: number, seed: number): Map<string, MemberState[]> {
  const next = random(seed);
  const budgets = createMemoryBudgets(globalBudgetLimits(program));
  const result = new Map<string, MemberState[]>();
  for (let member = 0; member < members; member++) {
    const memberId = `m${member}`;
    const states: MemberState[] = [];
    let state: MemberState | undefined;
    let atMs = START_MS + Math.floor(next() * 30 * DAY_MS);
    const events = 1 + Math.floor(next() * 14);
    for (let index = 0; index < events; index++) {
      atMs += Math.floor(next() * (next() < 0.3 ? 120 : 20) * DAY_MS) + Math.floor(next() * DAY_MS);
      const decision = applyEvent(state, randomEvent(next, program, state, memberId, index, atMs), atMs, program, { budgets });
      if (decision.state !== undefined && decision.state !== state) {
        state = decision.state;
        states.push(state);
      }
    }
    result.set(memberId, states);
  }
  return result;
}

/** Times to look at a state: around its own events, and far later. */
function timesFor(next: () => number, state: MemberState): number[] {
  const from = state.lastActivityMs;
  return [from, from + 1, from + Math.floor(next() * 40 * DAY_MS), from + Math.floor(next() * 400 * DAY_MS), from + 800 * DAY_MS];
}

const withoutAsOf = (body: string) => body.replace(/"asOf":"[^"]*"/, '"asOf":""');

describe('isoString', () => {
  it('writes what Date.prototype.toISOString writes', () => {
    const next = random(7);
    const values = [0, 1, 999, 1000, 59_999, 86_399_999, 86_400_000, Date.parse('2000-02-29T23:59:59.999Z'), Date.parse('2100-03-01T00:00:00Z'), Date.UTC(9999, 11, 31, 23, 59, 59, 999)];
    for (let index = 0; index < 20_000; index++) values.push(Math.floor(next() * Date.UTC(9999, 11, 31)));
    for (const ms of values) expect(isoString(ms), String(ms)).toBe(new Date(ms).toISOString());
    // Outside its fast range it is toISOString itself.
    for (const ms of [-1, -86_400_001, Date.UTC(10_000, 0, 1), 8.64e15, 1.5]) expect(isoString(ms)).toBe(new Date(ms).toISOString());
    expect(() => isoString(Number.NaN)).toThrow(RangeError);
  });
});

describe.each(PROGRAMS)('the wallet of %s members', (name) => {
  const program = programs.get(name)!;
  const members = histories(program, 60, name.length * 7919);
  const variants: Program[] = [program, { ...program, utcOffsetMinutes: 330 }, { ...program, utcOffsetMinutes: -600 }];

  it('walletBody writes walletJson(walletResponse(view)) character for character', () => {
    const next = random(11);
    let compared = 0;
    for (const states of members.values()) {
      for (const state of states) {
        for (const variant of variants) {
          for (const nowMs of timesFor(next, state)) {
            const view = walletView(state, variant, nowMs);
            const expected = walletJson(walletResponse(view, variant));
            expect(walletBody(view, variant), state.memberId).toBe(expected);
            expect(expected).toBe(JSON.stringify(walletResponse(view, variant)));
            compared += 1;
          }
        }
      }
    }
    expect(compared).toBeGreaterThan(500);
  });

  it('skips the sweep only when nothing is due: the view is that of the swept state', () => {
    const next = random(13);
    let swept = 0;
    for (const states of members.values()) {
      for (const state of states) {
        for (const nowMs of timesFor(next, state)) {
          const sweep = sweepMember(state, nowMs, program);
          if (sweep.state !== state) swept += 1;
          expect(walletView(state, program, nowMs), `${state.memberId} at ${nowMs}`).toEqual(walletView(sweep.state, program, nowMs));
        }
      }
    }
    if (name !== 'simple') expect(swept).toBeGreaterThan(20); // the histories do reach due times (simple has neither holding nor expiry)
  });

  it('stays the same but for asOf from now until walletViewStable says', () => {
    const next = random(17);
    let stable = 0;
    let checked = 0;
    for (const states of members.values()) {
      for (const state of states) {
        for (const variant of variants) {
          for (const nowMs of timesFor(next, state)) {
            const { view, stableUntilMs } = walletViewStable(state, variant, nowMs);
            expect(view).toEqual(walletView(state, variant, nowMs));
            expect(walletStableUntilMs(state, variant, view)).toBe(stableUntilMs);
            if (stableUntilMs <= nowMs) continue;
            stable += 1;
            const body = withoutAsOf(walletBody(view, variant));
            const horizonMs = Math.min(stableUntilMs, nowMs + 3 * 365 * DAY_MS);
            for (const atMs of [nowMs + 1, nowMs + Math.floor(next() * (horizonMs - nowMs)), horizonMs - 1]) {
              if (atMs <= nowMs || atMs >= horizonMs) continue;
              // The view itself (not just its month periods) stays: the cache adds the month end on its own.
              const later = walletView(state, variant, atMs);
              expect({ ...later, asOfMs: 0 }, `${state.memberId} ${nowMs} → ${atMs}`).toEqual({ ...view, asOfMs: 0 });
              checked += 1;
            }
            // ... and so does the body until the month ends.
            const monthEnd = Math.min(horizonMs, Date.UTC(new Date(nowMs + (variant.utcOffsetMinutes ?? 0) * 60_000).getUTCFullYear(), new Date(nowMs + (variant.utcOffsetMinutes ?? 0) * 60_000).getUTCMonth() + 1, 1) - (variant.utcOffsetMinutes ?? 0) * 60_000);
            if (monthEnd - 1 > nowMs) expect(withoutAsOf(walletBody(walletView(state, variant, monthEnd - 1), variant))).toBe(body);
          }
        }
      }
    }
    expect(stable).toBeGreaterThan(200);
    expect(checked).toBeGreaterThan(200);
  });
});

// ---- WalletCache ----

/** Records as a store would hold them: the core (state without its lists, plus voucher keys) and one record per voucher. */
function fakeRecords(engine: FakeEngine, corrupt: { voucherless?: boolean } = {}): WalletRecords & { reads: number } {
  const records = {
    reads: 0,
    partitionOf: (memberId: string) => partitionOf(memberId, 8),
    core(_partition: number, memberId: string) {
      records.reads += 1;
      const state = engine.states.get(memberId);
      if (state === undefined) return undefined;
      const { orders: _orders, redemptions: _redemptions, vouchers, ...core } = state;
      return Buffer.from(JSON.stringify({ ...core, voucherKeys: vouchers.map((voucher) => voucher.code) }));
    },
    voucher(_partition: number, memberId: string, code: string) {
      records.reads += 1;
      if (corrupt.voucherless === true) return undefined;
      const voucher = engine.states.get(memberId)?.vouchers.find((item) => item.code === code);
      return voucher === undefined ? undefined : Buffer.from(JSON.stringify(voucher));
    },
  };
  return records;
}

const fresh = (engine: FakeEngine, memberId: string, nowMs: number): string | undefined => {
  const state = engine.states.get(memberId);
  return state === undefined ? undefined : walletJson(walletResponse(walletView(state, engine.program, nowMs), engine.program));
};

describe('WalletCache', () => {
  it('answers every read as a fresh computation would, while members change, time passes and the program is replaced', () => {
    for (const name of PROGRAMS) {
      const engine = new FakeEngine(name);
      const program = engine.program;
      const records = fakeRecords(engine);
      const cache = new WalletCache(engine, { records });
      const next = random(23 + name.length);
      const budgets = createMemoryBudgets(globalBudgetLimits(program));
      let nowMs = START_MS;
      let eventIndex = 0;
      for (let step = 0; step < 8_000; step++) {
        const memberId = `m${Math.floor(next() * 25)}`;
        const pick = next();
        if (pick < 0.3) {
          // The actor's sweep: what is due gets applied, so the member's wallet can be kept again.
          const state = engine.states.get(memberId);
          if (state !== undefined) engine.states.set(memberId, sweepMember(state, nowMs, engine.program).state);
        } else if (pick < 0.4) {
          const state = engine.states.get(memberId);
          const decision = applyEvent(state, randomEvent(next, engine.program, state, memberId, eventIndex++, nowMs), nowMs, engine.program, { budgets });
          if (decision.state !== undefined) engine.states.set(memberId, decision.state);
        } else if (pick < 0.41) {
          // Activation: a new program object (the same text), which no kept body may outlive.
          engine.program = parseProgramText(programText(name));
        } else {
          expect(cache.json(memberId, engine.program, nowMs), `${name} ${memberId} step ${step}`).toBe(fresh(engine, memberId, nowMs));
        }
        nowMs += next() < 0.02 ? Math.floor(next() * 90 * DAY_MS) : Math.floor(next() * 6 * 3_600_000);
      }
      const stats = cache.stats();
      expect(stats.hits, name).toBeGreaterThan(500);
      expect(stats.misses, name).toBeGreaterThan(300);
      expect(stats.bytes).toBeGreaterThan(0);
    }
  });

  it('renders again when only a voucher record changed (its core the same, byte for byte)', () => {
    const engine = new FakeEngine('retail');
    const cache = new WalletCache(engine, { records: fakeRecords(engine) });
    const nowMs = START_MS + 10 * DAY_MS;
    const state = withVoucher(engine, 'ann', START_MS);
    const first = cache.json('ann', engine.program, nowMs)!;
    expect(first).toContain(state.vouchers[0]!.code);
    expect(cache.json('ann', engine.program, nowMs + 1)).toBe(fresh(engine, 'ann', nowMs + 1));
    expect(cache.stats().hits).toBe(1);
    // Redeemed, and nothing else changed: the core record is the same bytes.
    engine.states.set('ann', { ...state, vouchers: [{ ...state.vouchers[0]!, redeemedAtMs: nowMs }, ...state.vouchers.slice(1)] });
    const after = cache.json('ann', engine.program, nowMs + 2)!;
    expect(after).toBe(fresh(engine, 'ann', nowMs + 2));
    expect(after).not.toContain(state.vouchers[0]!.code);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2 });
  });

  it('keeps nothing for a member whose records it cannot find, and nothing past its byte bound', () => {
    const engine = new FakeEngine('retail');
    withVoucher(engine, 'ann', START_MS);
    const nowMs = START_MS + DAY_MS;
    const blind = new WalletCache(engine, { records: fakeRecords(engine, { voucherless: true }) });
    for (let read = 0; read < 3; read++) expect(blind.json('ann', engine.program, nowMs + read)).toBe(fresh(engine, 'ann', nowMs + read));
    expect(blind.stats()).toMatchObject({ hits: 0, misses: 3, entries: 0, bytes: 0 });
    expect(blind.json('nobody', engine.program, nowMs)).toBeUndefined();

    for (let member = 0; member < 50; member++) withVoucher(engine, `m${member}`, START_MS);
    const bytesMax = 8 * 1024;
    const small = new WalletCache(engine, { records: fakeRecords(engine), bytesMax });
    for (let round = 0; round < 3; round++) {
      for (let member = 0; member < 50; member++) {
        expect(small.json(`m${member}`, engine.program, nowMs + round)).toBe(fresh(engine, `m${member}`, nowMs + round));
        expect(small.stats().bytes).toBeLessThanOrEqual(bytesMax);
      }
    }
    expect(small.stats().entries).toBeGreaterThan(0);
    expect(small.stats().entries).toBeLessThan(50);
    // The most recent ones are kept (oldest out first).
    const hits = small.stats().hits;
    small.json('m49', engine.program, nowMs + 3);
    expect(small.stats().hits).toBe(hits + 1);

    const none = new WalletCache(engine, { records: fakeRecords(engine), bytesMax: 0 });
    expect(none.json('ann', engine.program, nowMs)).toBe(fresh(engine, 'ann', nowMs));
    expect(none.stats()).toMatchObject({ entries: 0, bytes: 0 });
  });

  it('serves GET /wallet as JSON, from the cache once it is kept', async () => {
    const engine = new FakeEngine('retail');
    withVoucher(engine, 'ann', Date.now() - DAY_MS);
    const wallets = new WalletCache(engine, { records: fakeRecords(engine) });
    const app = await buildHttpServer({
      host: '127.0.0.1',
      port: 0,
      registry: { contentType: 'text/plain', metrics: async () => '' },
      health: () => ({ ok: true, detail: {} }),
      api: { ...fakeContext(engine), wallets },
    });
    try {
      for (let read = 0; read < 3; read++) {
        const reply = await app.inject({ method: 'GET', url: '/v1/members/ann/wallet', headers: auth('read') });
        expect(reply.statusCode).toBe(200);
        expect(reply.headers['content-type']).toBe('application/json; charset=utf-8');
        expect(reply.headers['cache-control']).toBe('no-store');
        const body = reply.json() as { asOf: string };
        expect(reply.body).toBe(fresh(engine, 'ann', Date.parse(body.asOf)));
      }
      expect(wallets.stats()).toMatchObject({ hits: 2, misses: 1 });
      const unknown = await app.inject({ method: 'GET', url: '/v1/members/nobody/wallet', headers: auth('read') });
      expect(unknown.statusCode).toBe(404);
      expect(unknown.json()).toMatchObject({ error: { code: 'MEMBER_NOT_FOUND' } });
    } finally {
      await app.close();
    }
  });
});

/** A member with a purchase that earned a voucher or two (retail: the tier and challenge benefits). */
function withVoucher(engine: FakeEngine, memberId: string, atMs: number): MemberState {
  for (let index = 0; index < 3; index++) {
    engine.apply({ id: `${memberId}-p${index}`, memberId, type: 'purchase', occurredAt: new Date(atMs + index * 1000).toISOString(), amountMinor: 90_000, currency: 'EUR' } as LoyaltyEvent);
  }
  const state = engine.states.get(memberId)!;
  expect(state.vouchers.length).toBeGreaterThan(0);
  return state;
}

// ---- over the LMDB store ----

const root = mkdtempSync(join(tmpdir(), 'loyalty-wallet-cache-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('LmdbStore.walletRecords', () => {
  it('finds the records LmdbStore.walletMember reads, and the cache over them follows every commit', async () => {
    const partitions = 8;
    const store = new LmdbStore({ dataDir: join(root, 'store'), mapSizeBytes: 64 * 1024 * 1024, partitions });
    try {
      await store.ensureMeta(partitions, START_MS);
      const engine = new FakeEngine('retail');
      const records = store.walletRecords();
      const cache = new WalletCache(store, { records });
      const written = new Map<string, MemberState>();
      const write = async (state: MemberState) => {
        const base = written.get(state.memberId);
        await store.commit({ members: [{ partition: partitionOf(state.memberId, partitions), state, created: base === undefined, base, dueMs: null }], ledger: [], processed: [] });
        written.set(state.memberId, state);
      };
      // Before the purchases' points are released (14 days): nothing is due, every wallet can be kept.
      const nowMs = START_MS + DAY_MS;
      const expectFresh = (memberId: string, atMs: number) => {
        const stored = store.walletMember(memberId);
        expect(cache.json(memberId, engine.program, atMs)).toBe(stored === undefined ? undefined : walletJson(walletResponse(walletView(stored, engine.program, atMs), engine.program)));
      };

      for (let member = 0; member < 20; member++) await write(withVoucher(engine, `m${member}`, START_MS + member * 60_000));
      for (const [memberId, state] of written) {
        const partition = partitionOf(memberId, partitions);
        expect(records.core(partition, memberId)).toBeDefined();
        for (const voucher of state.vouchers) expect(records.voucher(partition, memberId, voucher.code), voucher.code).toBeDefined();
        expect(store.walletMember(memberId)!.vouchers).toEqual(state.vouchers);
      }
      for (let round = 0; round < 3; round++) for (const memberId of written.keys()) expectFresh(memberId, nowMs + round);
      expect(cache.stats()).toMatchObject({ misses: 20, hits: 40, entries: 20 });
      expectFresh('nobody', nowMs);

      // A purchase: the core changes.
      engine.apply({ id: 'm3-later', memberId: 'm3', type: 'purchase', occurredAt: new Date(nowMs).toISOString(), amountMinor: 5_000, currency: 'EUR' } as LoyaltyEvent);
      await write(engine.states.get('m3')!);
      expectFresh('m3', nowMs + 10);
      // Only a voucher record changes (redeemed, nothing else touched): the core is rewritten with the same bytes.
      const m4 = written.get('m4')!;
      await write({ ...m4, vouchers: [{ ...m4.vouchers[0]!, redeemedAtMs: nowMs }, ...m4.vouchers.slice(1)] });
      const before = cache.stats();
      expectFresh('m4', nowMs + 11);
      expect(cache.stats().misses).toBe(before.misses + 1);
      expect(cache.json('m4', engine.program, nowMs + 12)).not.toContain(m4.vouchers[0]!.code);
      expect(cache.stats().hits).toBe(before.hits + 1);
      for (const memberId of written.keys()) expectFresh(memberId, nowMs + 13);
    } finally {
      await store.close();
    }
  });
});
