import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_GENERATOR_OPTIONS, EventGenerator } from '../../../bench/generator/events.js';
import { programModelOf } from '../../../bench/generator/program-model.js';
import { loadProgramFile } from '../../../src/config/program-file.js';
import { applyEvent } from '../../../src/domain/apply.js';
import { compileProgram } from '../../../src/domain/compiled.js';
import { validateEvent } from '../../../src/domain/events.js';
import type { DomainPorts } from '../../../src/domain/ports.js';
import type { MemberState, OrderRecord, VoucherRecord } from '../../../src/domain/state.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { LmdbStore } from '../../../src/store/lmdb.js';
import { pack, unpack } from 'msgpackr';
import { decodeCore, joinItem, joinMember, memberChanges, memberRecords, storedOrder, type StoredItem } from '../../../src/store/member-records.js';

const root = mkdtempSync(join(tmpdir(), 'loyalty-member-records-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const order = (orderId: string, returned = 0) => ({ orderId, lines: [{ sku: 'A', returned }] }) as unknown as OrderRecord;
const voucher = (code: string) => ({ code }) as unknown as VoucherRecord;
const state = (orders: readonly OrderRecord[], vouchers: readonly VoucherRecord[] = [], currencies: MemberState['currencies'] = {}) =>
  ({ memberId: 'm1', tierId: 'member', currencies, orders, redemptions: [], vouchers }) as unknown as MemberState;

describe('member records', () => {
  it('writes only the items that changed, and removes the ones that left', () => {
    const kept = order('o1');
    const returned = order('o2');
    const base = state([kept, returned, order('o3')], [voucher('V1')]);
    const after = state([kept, order('o2', 1), order('o4')], base.vouchers);
    const changes = memberChanges(after, base, null);
    expect(changes.puts.map(([kind, key]) => `${kind}:${key}`)).toEqual(['o:o2', 'o:o4']);
    expect(changes.removes).toEqual([['o', 'o3']]);
    expect(changes.core.orders).toEqual('o1\no2\no4');
    expect(changes.core.vouchers).toEqual(['V1']);
    // The core names its items by key only: no item record's contents in it.
    expect(JSON.stringify(changes.core)).not.toContain('"lines"');
  });

  it('writes every item of a member the store does not hold yet', () => {
    const changes = memberChanges(state([order('o1'), order('o2')], [voucher('V1')]), undefined, null);
    expect(changes.puts.map(([kind, key]) => `${kind}:${key}`)).toEqual(['o:o1', 'o:o2', 'v:V1']);
    expect(changes.removes).toEqual([]);
  });

  it('refuses two items with one key (the domain keeps them unique)', () => {
    expect(() => memberChanges(state([order('o1'), order('o1')]), undefined, null)).toThrow(/duplicate o key o1/);
  });

  it('joins the core and its items back into the state, in list order', () => {
    const original = state([order('o2'), order('o1')], [voucher('V9'), voucher('V1')]);
    const { core, puts } = memberChanges(original, undefined, null);
    const items = new Map(puts.map(([kind, key, item]) => [`${kind}${key}`, item]));
    expect(joinMember(core, (kind, key) => items.get(`${kind}${key}`))).toEqual(original);
    expect(() => joinMember(core, () => undefined)).toThrow(/lacks its o record o2/);
  });

  it('stores lots as flat number lists and key lists as one string, and reads both those and the older object forms', () => {
    const points = {
      spendable: 30,
      pending: 5,
      qualifying: 35,
      debt: 0,
      lifetimeEarned: 35,
      lots: [{ expiresAtMs: 1_000, points: 10 }, { expiresAtMs: null, points: 20 }],
      pendingLots: [{ releaseAtMs: 500, expiresAtMs: null, points: 5 }],
      noticeThroughMs: 0,
    };
    const original = state([order('o1'), order('line\nbreak')], [voucher('V1'), voucher('V2')], { points });
    const { core, puts } = memberChanges(original, undefined, 123);
    expect(core.currencies.points).toMatchObject({ lots: [1_000, 10, null, 20], pendingLots: [500, null, 5], spendable: 30 });
    // A key holding a newline keeps its list an array; the others are joined.
    expect(core.orders).toEqual(['o1', 'line\nbreak']);
    expect(core.vouchers).toBe('V1\nV2');
    const items = new Map(puts.map(([kind, key, item]) => [`${kind}${key}`, item]));
    const itemOf = (kind: string, key: string) => items.get(`${kind}${key}`);
    expect(joinMember(core, itemOf)).toEqual(original);
    // Records written before the flat forms: object lots, key arrays under orderKeys, redemptionKeys, voucherKeys.
    const { orders: orderKeys, redemptions: redemptionKeys, vouchers: _vouchers, ...bare } = core;
    const older = { ...bare, currencies: { points }, orderKeys, redemptionKeys, voucherKeys: ['V1', 'V2'] };
    expect(joinMember(older, itemOf)).toEqual(original);
  });

  it('LMDB gives back exactly the states the domain produced, batch after batch and after a reopen (retail program, generated traffic)', async () => {
    const program = loadProgramFile(join(import.meta.dirname, '../../../config/programs/retail.yaml'));
    const compiled = compileProgram(program);
    const ports: DomainPorts = { budgets: { tryConsume: (_promotionId: string, points: number) => points, release: () => undefined } };
    // Few members, many events: busy members with many orders, redemptions and vouchers.
    const generator = new EventGenerator({ ...DEFAULT_GENERATOR_OPTIONS, runId: 'records', members: 12, count: 3000, program: programModelOf(program) });
    const dataDir = join(root, 'traffic');
    const partitions = 8;
    let store = new LmdbStore({ dataDir, mapSizeBytes: 256 * 1024 * 1024, partitions });
    await store.ensureMeta(partitions, 0);
    const states = new Map<string, MemberState>();
    let written = new Map<string, MemberState>();
    let batch = new Map<string, MemberState>();
    const commit = async () => {
      await store.commit({
        members: [...batch].map(([memberId, next]) => ({
          partition: partitionOf(memberId, partitions),
          state: next,
          base: written.get(memberId),
          created: !written.has(memberId),
          dueMs: null,
        })),
        ledger: [],
        processed: [],
      });
      for (const [memberId, next] of batch) {
        written.set(memberId, next);
        expect(store.readMember(partitionOf(memberId, partitions), memberId)).toEqual(next);
      }
      batch = new Map();
    };
    for (let index = 0; index < 3000; index++) {
      const validation = validateEvent(generator.next().event);
      if (!validation.ok) throw new Error(validation.reason);
      const { event, occurredAtMs } = validation;
      const decision = applyEvent(states.get(event.memberId), event, occurredAtMs, compiled, ports);
      if (decision.state !== undefined) {
        states.set(event.memberId, decision.state);
        batch.set(event.memberId, decision.state);
      }
      if (index % 37 === 36) await commit();
      // Now and then the state is read back from the store, as after a cache eviction.
      if (index % 500 === 499) {
        await commit();
        written = new Map([...written.keys()].map((memberId) => [memberId, store.readMember(partitionOf(memberId, partitions), memberId)!]));
        for (const [memberId, stored] of written) states.set(memberId, stored);
      }
    }
    await commit();
    const busiest = [...states.values()].sort((a, b) => b.eventCount - a.eventCount)[0]!;
    expect(busiest.orders.length).toBeGreaterThan(50);
    expect(busiest.vouchers.length + busiest.redemptions.length).toBeGreaterThan(10);
    await store.close();
    store = new LmdbStore({ dataDir, mapSizeBytes: 256 * 1024 * 1024, partitions });
    for (const [memberId, expected] of states) {
      expect(store.readMember(partitionOf(memberId, partitions), memberId)).toEqual(expected);
      // What a wallet reads: the same member without orders and redemptions.
      expect(store.walletMember(memberId)).toEqual({ ...expected, orders: [], redemptions: [] });
    }
    // No item record outlives its place in a list.
    const records = store.root.openDB({ name: 'members', encoding: 'msgpack' });
    let itemRecords = 0;
    for (const { key } of records.getRange({})) if ((key as unknown[])[2] === 3) itemRecords += 1;
    const listed = [...states.values()].reduce((sum, member) => sum + member.orders.length + member.redemptions.length + member.vouchers.length, 0);
    expect(itemRecords).toBe(listed);
    await store.close();
  });
});

describe('core rows', () => {
  const program = loadProgramFile(join(import.meta.dirname, '../../../config/programs/retail.yaml'));
  const compiled = compileProgram(program);
  const ports: DomainPorts = { budgets: { tryConsume: (_promotionId: string, points: number) => points, release: () => undefined } };
  const busyStates = (): MemberState[] => {
    const generator = new EventGenerator({ ...DEFAULT_GENERATOR_OPTIONS, runId: 'rows', members: 20, count: 1500, program: programModelOf(program) });
    const states = new Map<string, MemberState>();
    for (let index = 0; index < 1500; index++) {
      const validation = validateEvent(generator.next().event);
      if (!validation.ok) throw new Error(validation.reason);
      const decision = applyEvent(states.get(validation.event.memberId), validation.event, validation.occurredAtMs, compiled, ports);
      if (decision.state !== undefined) states.set(validation.event.memberId, decision.state);
    }
    return [...states.values()];
  };

  it('hold a domain state as one flat row that decodes to the map core, through msgpack', () => {
    const states = busyStates();
    // Engagement, badges and lots of every kind: the row's optional and nested fields are exercised.
    expect(states.some((member) => member.engagement !== undefined)).toBe(true);
    for (const member of states) {
      const { core } = memberRecords(member, undefined, 42);
      expect(Array.isArray(core)).toBe(true);
      expect((core as readonly unknown[]).every((value) => value === null || typeof value !== 'object' || Array.isArray(value) || value === member.paid || value === member.badgeProgress)).toBe(true);
      const decoded = decodeCore(unpack(pack(core)));
      expect(decoded).toEqual(memberChanges(member, undefined, 42).core);
      const { puts } = memberRecords(member, undefined, 42);
      const items = new Map(puts.map(([kind, key, item]) => [`${kind}${key}`, unpack(pack(item)) as StoredItem]));
      expect(joinMember(decoded, (kind, key) => items.get(`${kind}${key}`))).toStrictEqual(joinMember(memberChanges(member, undefined, 42).core, (kind, key) => items.get(`${kind}${key}`)));
    }
  });

  it('fall back to the map core for a state with a field the row does not know, or an optional field set to undefined', () => {
    const member = busyStates()[0]!;
    for (const odd of [{ ...member, loyaltyNote: 'x' }, { ...member, digestAtMs: undefined }, { ...member, currencies: { points: { ...member.currencies.points!, extra: 1 } } }]) {
      const { core } = memberRecords(odd as unknown as MemberState, undefined, null);
      expect(Array.isArray(core)).toBe(false);
      expect(decodeCore(core)).toBe(core);
      expect(core).toEqual(memberChanges(odd as unknown as MemberState, undefined, null).core);
    }
    // A required field missing, its count taken by an unknown one.
    const { tierGrace: _tierGrace, ...rest } = member;
    expect(Array.isArray(memberRecords({ ...rest, unknownField: 1 } as unknown as MemberState, undefined, null).core)).toBe(false);
  });

  it('refuse a row of an unknown layout or length', () => {
    const { core } = memberRecords(busyStates()[0]!, undefined, null);
    const row = core as unknown[];
    expect(() => decodeCore([9, ...row.slice(1)])).toThrow(/unknown stored core layout/);
    expect(() => decodeCore([...row, 1])).toThrow(/wrong length/);
  });
});

describe('stored orders', () => {
  const full: OrderRecord = {
    orderId: 'o-1',
    eventId: 'e-1',
    atMs: 1_795_000_000_000,
    closesAtMs: 1_796_000_000_000,
    releaseAtMs: 1_795_500_000_000,
    amountMinor: 12_345,
    currencyCode: 'EUR',
    refundedMinor: 100,
    spendClawedMinor: 90,
    tierBucketKey: 24_322,
    currencies: [
      { currency: 'points', earned: 246, qualifyingEarned: 246, clawed: 2, qualifyingClawed: 2, pendingLeft: 244 },
      { currency: 'miles', earned: 5, qualifyingEarned: 0, clawed: 0, qualifyingClawed: 0, pendingLeft: 5 },
    ],
    lines: [
      { sku: 'shoes-1', quantity: 2, returned: 1, valueMinor: 10_000, points: { points: 200, miles: 5 } },
      { sku: 'socks', quantity: 1, returned: 0, valueMinor: 2_345, points: {} },
    ],
  };

  it('are flat rows that decode to the very same order', () => {
    const stored = storedOrder(full);
    expect(Array.isArray(stored)).toBe(true);
    expect((stored as readonly unknown[]).every((value) => typeof value !== 'object')).toBe(true);
    expect(joinItem('o', unpack(pack(stored)) as StoredItem)).toStrictEqual(full);
  });

  it('keep an order with a field the codec does not know as it is', () => {
    const extended = { ...full, giftWrap: true } as unknown as OrderRecord;
    expect(storedOrder(extended)).toBe(extended);
    const extendedLine = { ...full, lines: [{ ...full.lines[0]!, note: 'x' }] } as unknown as OrderRecord;
    expect(storedOrder(extendedLine)).toBe(extendedLine);
    // Orders written as objects (before the rows) read as they are.
    expect(joinItem('o', full)).toBe(full);
  });

  it('refuse a row of an unknown layout or with values left over', () => {
    const row = storedOrder(full) as (string | number)[];
    expect(() => joinItem('o', [9, ...row.slice(1)])).toThrow(/unknown stored order layout/);
    expect(() => joinItem('o', [...row, 'extra'])).toThrow(/values left over/);
  });
});
