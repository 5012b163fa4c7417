import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LedgerQuery, MemberRouting } from '../../../src/api/context.js';
import { buildHttpServer } from '../../../src/api/http.js';
import { ledgerPageJson, ledgerPageResponse, PartitionMemberRouting, ROUTED_RETRY_AFTER_SECONDS, type RoutedOutcome, type RoutedRead } from '../../../src/api/member-routing.js';
import { registerMemberRoutes } from '../../../src/api/routes/members.js';
import { installZodCompilers } from '../../../src/api/schema.js';
import { decodeCursor, encodeCursor } from '../../../src/api/views.js';
import { WalletRoutingError, type WalletRoutingCode } from '../../../src/cluster/wallet-routing.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { auth, fakeContext, FakeEngine, purchase } from './fake-context.js';

/**
 * GET /v1/members/{id}/wallet and .../ledger in cluster mode, with a fake
 * ctx.memberRouting: a member this instance owns is read locally exactly as
 * before (synchronously, the routing never asked); another is the owner's
 * JSON text as it stands; each routing failure is the API's error code.
 */

/** A fake owner: answers from its own engine, or throws what a test says. */
class FakeRouting implements MemberRouting {
  readonly owned = new Set<string>();
  readonly calls: { read: 'wallet' | 'ledger'; memberId: string; query?: LedgerQuery }[] = [];
  failure: unknown;
  constructor(private readonly owner: FakeEngine) {}

  owns(memberId: string): boolean {
    return this.owned.has(memberId);
  }

  async wallet(memberId: string): Promise<string> {
    this.calls.push({ read: 'wallet', memberId });
    if (this.failure !== undefined) throw this.failure;
    return `{"owner":"wallet","memberId":${JSON.stringify(memberId)},"events":${this.owner.states.get(memberId)?.eventCount ?? -1}}`;
  }

  async ledger(memberId: string, query: LedgerQuery): Promise<string> {
    this.calls.push({ read: 'ledger', memberId, query });
    if (this.failure !== undefined) throw this.failure;
    return ledgerPageJson(this.owner, memberId, query, 1 << 20) ?? '{}';
  }
}

function expectError(response: { statusCode: number; json(): unknown }, status: number, code: string) {
  expect(response.statusCode).toBe(status);
  const body = response.json() as { error: { code: string; message: string; details?: any } };
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
  return body.error;
}

describe('member reads with ctx.memberRouting', () => {
  let local: FakeEngine;
  let owner: FakeEngine;
  let routing: FakeRouting;
  let app: FastifyInstance;
  let plain: FastifyInstance;

  beforeEach(async () => {
    local = new FakeEngine();
    owner = new FakeEngine();
    for (const engine of [local, owner]) engine.apply(purchase('ann', 'p1', 12_345, '2026-11-01T10:00:00Z'));
    // bob lives elsewhere; this instance still holds a stale copy of him (a partition handed over).
    local.apply(purchase('bob', 'b1', 1_000, '2026-11-01T10:00:00Z'));
    for (let index = 1; index <= 7; index++) owner.apply(purchase('bob', `b${index}`, 1_000 * index, `2026-11-0${index}T10:00:00Z`));
    routing = new FakeRouting(owner);
    routing.owned.add('ann');
    const registry = new Registry();
    app = await buildHttpServer({ host: '127.0.0.1', port: 0, registry, health: () => ({ ok: true, detail: {} }), api: { ...fakeContext(local), memberRouting: routing } });
    plain = await buildHttpServer({ host: '127.0.0.1', port: 0, registry, health: () => ({ ok: true, detail: {} }), api: fakeContext(local) });
  });

  afterEach(async () => {
    await app.close();
    await plain.close();
  });

  it('reads an owned member locally, as without routing, and never asks the routing', async () => {
    for (const path of ['wallet', 'ledger', 'ledger?limit=1&kind=earn']) {
      const routed = await app.inject({ method: 'GET', url: `/v1/members/ann/${path}`, headers: auth('read') });
      const single = await plain.inject({ method: 'GET', url: `/v1/members/ann/${path}`, headers: auth('read') });
      expect(routed.statusCode, path).toBe(200);
      const normal = (body: string) => body.replace(/"asOf":"[^"]+"/, '"asOf":"-"');
      expect(normal(routed.body), path).toBe(normal(single.body));
      expect(routed.headers['content-type']).toBe(single.headers['content-type']);
    }
    routing.owned.add('nobody');
    expectError(await app.inject({ method: 'GET', url: '/v1/members/nobody/wallet', headers: auth('read') }), 404, 'MEMBER_NOT_FOUND');
    expectError(await app.inject({ method: 'GET', url: '/v1/members/nobody/ledger', headers: auth('read') }), 404, 'MEMBER_NOT_FOUND');
    expect(routing.calls).toEqual([]);
  });

  it('keeps the owned wallet read synchronous: the handler sends and returns no promise', async () => {
    const bare = Fastify();
    const handlers = new Map<string, RouteOptions['handler']>();
    bare.addHook('onRoute', (route) => void handlers.set(route.url, route.handler));
    installZodCompilers(bare);
    registerMemberRoutes(bare, { ...fakeContext(local), memberRouting: routing });
    await bare.ready();
    const handler = handlers.get('/v1/members/:memberId/wallet')!;
    const sent: unknown[] = [];
    const reply = { header: () => reply, send: (body: unknown) => (sent.push(body), reply) };
    const owned = handler.call(bare, { params: { memberId: 'ann' } } as never, reply as never);
    expect(owned).toBeUndefined();
    expect(typeof sent[0]).toBe('string');
    expect(JSON.parse(sent[0] as string)).toMatchObject({ memberId: 'ann' });
    const other = handler.call(bare, { params: { memberId: 'bob' } } as never, reply as never) as unknown as Promise<string>;
    expect(other).toBeInstanceOf(Promise);
    expect(JSON.parse(await other)).toMatchObject({ owner: 'wallet', memberId: 'bob' });
    await bare.close();
  });

  it('answers a member of another partition with the owner\'s JSON text as it stands, not the stale local copy', async () => {
    const wallet = await app.inject({ method: 'GET', url: '/v1/members/bob/wallet', headers: auth('read') });
    expect(wallet.statusCode).toBe(200);
    expect(wallet.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(wallet.headers['cache-control']).toBe('no-store');
    expect(wallet.body).toBe(await routing.wallet('bob'));
    expect(wallet.json().events).toBe(7);
    expect(local.states.get('bob')!.eventCount).toBe(1);

    // The ledger: the query is checked here, passed parsed, and the owner's page is the body.
    const cursor = encodeCursor(2);
    const page = await app.inject({ method: 'GET', url: `/v1/members/bob/ledger?limit=2&cursor=${cursor}&kind=earn&from=2026-11-02&to=2026-11-07`, headers: auth('read') });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(routing.calls.at(-1)).toEqual({
      read: 'ledger',
      memberId: 'bob',
      query: { afterSeq: 2, limit: 2, kinds: ['earn'], fromMs: Date.parse('2026-11-02T00:00:00Z'), toMs: Date.parse('2026-11-07T00:00:00Z') },
    });
    // Byte for byte what the owner's own route would send for the same query.
    const ownerApp = await buildHttpServer({ host: '127.0.0.1', port: 0, registry: new Registry(), health: () => ({ ok: true, detail: {} }), api: fakeContext(owner) });
    try {
      const atOwner = await ownerApp.inject({ method: 'GET', url: `/v1/members/bob/ledger?limit=2&cursor=${cursor}&kind=earn&from=2026-11-02&to=2026-11-07`, headers: auth('read') });
      expect(page.body).toBe(atOwner.body);
      expect(page.json().entries).toHaveLength(2);
    } finally {
      await ownerApp.close();
    }
    const calls = routing.calls.length;
    // A bad query is refused here, before anything is sent.
    expectError(await app.inject({ method: 'GET', url: '/v1/members/bob/ledger?cursor=forged', headers: auth('read') }), 400, 'VALIDATION_FAILED');
    expectError(await app.inject({ method: 'GET', url: '/v1/members/bob/ledger?from=2026-11-05&to=2026-11-01', headers: auth('read') }), 400, 'VALIDATION_FAILED');
    expect(routing.calls).toHaveLength(calls);
  });

  const mappings: [WalletRoutingCode, number, string, boolean][] = [
    ['PARTITION_UNAVAILABLE', 503, 'PARTITION_UNAVAILABLE', true],
    ['PARTITION_NOT_OWNED', 503, 'PARTITION_UNAVAILABLE', true],
    ['REQUEST_FAILED', 503, 'PARTITION_UNAVAILABLE', true],
    ['OVERLOADED', 503, 'OVERLOADED', true],
    ['PARTITION_TIMEOUT', 504, 'PARTITION_TIMEOUT', false],
    ['WRONG_PARTITION', 500, 'INTERNAL_ERROR', false],
    ['INTERNAL_ERROR', 500, 'INTERNAL_ERROR', false],
    ['VALIDATION_FAILED', 500, 'INTERNAL_ERROR', false],
  ];

  it.each(mappings)('maps the router\'s %s to HTTP %i %s', async (routingCode, status, code, retryAfter) => {
    routing.failure = new WalletRoutingError(routingCode, `partition 7 (instance b): what the router said (${routingCode})`, 7);
    for (const path of ['wallet', 'ledger?limit=3']) {
      const response = await app.inject({ method: 'GET', url: `/v1/members/bob/${path}`, headers: auth('read') });
      const error = expectError(response, status, code);
      expect(error.message).toContain(`what the router said (${routingCode})`);
      expect(error.message).toContain('bob');
      expect(error.details).toEqual({ partition: 7, routingCode });
      expect(response.headers['retry-after']).toBe(retryAfter ? String(ROUTED_RETRY_AFTER_SECONDS) : undefined);
      expect(response.headers['content-type']).toBe('application/json; charset=utf-8');
    }
  });

  it('maps an unknown member at the owner to the same 404 as a local read', async () => {
    routing.failure = new WalletRoutingError('MEMBER_NOT_FOUND', 'partition 7 (instance b): member carl is not known', 7);
    routing.owned.add('carl-local');
    for (const path of ['wallet', 'ledger']) {
      const remote = await app.inject({ method: 'GET', url: `/v1/members/carl/${path}`, headers: auth('read') });
      const here = await plain.inject({ method: 'GET', url: `/v1/members/carl/${path}`, headers: auth('read') });
      expect(remote.statusCode).toBe(404);
      expect(remote.body).toBe(here.body);
      expect(remote.headers['retry-after']).toBeUndefined();
    }
  });

  it('answers a failure that is not the router\'s as a plain INTERNAL_ERROR', async () => {
    routing.failure = new Error('boom');
    const error = expectError(await app.inject({ method: 'GET', url: '/v1/members/bob/wallet', headers: auth('read') }), 500, 'INTERNAL_ERROR');
    expect(error.message).toBe('internal error; see the engine log');
  });
});

describe('PartitionMemberRouting', () => {
  const PARTITIONS = 64;
  const members = Array.from({ length: 400 }, (_, index) => `m-${index}`);

  it('owns exactly the members of the partitions it was told, and routes the rest', async () => {
    const asked: string[] = [];
    const routing = new PartitionMemberRouting(
      { wallet: async (memberId) => (asked.push(memberId), `{"w":"${memberId}"}`), ledger: async (memberId) => `{"l":"${memberId}"}` },
      { partitions: PARTITIONS },
    );
    expect(members.filter((memberId) => routing.owns(memberId))).toEqual([]);
    const owned = [0, 5, 63];
    routing.setOwned([...owned, 64, -1, 1.5]); // out of range: ignored
    for (const memberId of members) expect(routing.owns(memberId), memberId).toBe(owned.includes(partitionOf(memberId, PARTITIONS)));
    routing.setOwned([]);
    expect(members.some((memberId) => routing.owns(memberId))).toBe(false);
    expect(await routing.wallet('m-1')).toBe('{"w":"m-1"}');
    expect(await routing.ledger('m-2', { afterSeq: 0, limit: 5 })).toBe('{"l":"m-2"}');
    expect(asked).toEqual(['m-1']);
  });

  it('counts every routed read by outcome, and refuses past its in-flight bound with OVERLOADED at once', async () => {
    const reads: [RoutedRead, RoutedOutcome][] = [];
    const gates: (() => void)[] = [];
    let fail: WalletRoutingCode | undefined;
    const routing = new PartitionMemberRouting(
      {
        wallet: (memberId) =>
          new Promise<string>((resolve, reject) => {
            const failing = fail;
            gates.push(() => (failing === undefined ? resolve(`{"w":"${memberId}"}`) : reject(new WalletRoutingError(failing, failing, 1))));
          }),
        ledger: async () => {
          throw new Error('boom');
        },
      },
      { partitions: PARTITIONS, inFlightMax: 2, onRead: (read, outcome, seconds) => (reads.push([read, outcome]), expect(seconds).toBeGreaterThanOrEqual(0)) },
    );
    const first = routing.wallet('a');
    fail = 'PARTITION_TIMEOUT';
    const second = routing.wallet('b');
    expect(routing.inFlightNow()).toBe(2);
    const third = await routing.wallet('c').catch((error: unknown) => error);
    expect(third).toBeInstanceOf(WalletRoutingError);
    expect((third as WalletRoutingError).code).toBe('OVERLOADED');
    gates.forEach((open) => open());
    expect(await first).toBe('{"w":"a"}');
    await expect(second).rejects.toMatchObject({ code: 'PARTITION_TIMEOUT' });
    expect(routing.inFlightNow()).toBe(0);
    for (const code of ['MEMBER_NOT_FOUND', 'PARTITION_UNAVAILABLE', 'REQUEST_FAILED', 'OVERLOADED', 'WRONG_PARTITION'] as const) {
      fail = code;
      const read = routing.wallet('d');
      gates.at(-1)!();
      await read.catch(() => undefined);
    }
    await expect(routing.ledger('e', { afterSeq: 0, limit: 1 })).rejects.toThrow('boom');
    expect(reads).toEqual([
      ['wallet', 'overloaded'],
      ['wallet', 'ok'],
      ['wallet', 'timeout'],
      ['wallet', 'not_found'],
      ['wallet', 'unavailable'],
      ['wallet', 'unavailable'],
      ['wallet', 'overloaded'],
      ['wallet', 'failed'],
      ['ledger', 'failed'],
    ]);
  });
});

describe('the ledger page as JSON text (the owner\'s answer)', () => {
  const engine = new FakeEngine();
  for (let index = 0; index < 60; index++) {
    engine.apply({
      id: `a${index}`,
      memberId: 'ann',
      type: 'adjustment',
      occurredAt: new Date(Date.parse('2026-11-01T00:00:00Z') + index * 3_600_000).toISOString(),
      direction: 'credit',
      points: 1 + index,
      currency: 'points',
      reason: `goodwill ${'é"\n'.repeat(20 + (index % 7) * 10)}`,
      operator: 'ops',
    } as never);
  }

  it('is JSON.stringify of the route\'s page while it fits', () => {
    for (const query of [
      { afterSeq: 0, limit: 50 },
      { afterSeq: 10, limit: 7, kinds: ['adjustment'] },
      { afterSeq: 0, limit: 500, fromMs: Date.parse('2026-11-02T00:00:00Z'), toMs: Date.parse('2026-11-02T05:00:00Z') },
      { afterSeq: 1_000, limit: 5 },
    ]) {
      expect(ledgerPageJson(engine, 'ann', query, 1 << 20)).toBe(JSON.stringify(ledgerPageResponse(engine, 'ann', query)));
    }
    expect(ledgerPageJson(engine, 'nobody', { afterSeq: 0, limit: 5 }, 1 << 20)).toBeUndefined();
    expect(ledgerPageResponse(engine, 'nobody', { afterSeq: 0, limit: 5 })).toBeUndefined();
  });

  it('keeps the entries that fit under the bound, and its cursor continues after the last one kept: nothing skipped', () => {
    const all = ledgerPageResponse(engine, 'ann', { afterSeq: 0, limit: 500 })!.entries;
    expect(all).toHaveLength(60);
    for (const bytesMax of [1, 2_000, 9_000, 20_000]) {
      const seen: unknown[] = [];
      let afterSeq = 0;
      for (let pages = 0; pages < 100; pages++) {
        const text = ledgerPageJson(engine, 'ann', { afterSeq, limit: 500 }, bytesMax)!;
        const page = JSON.parse(text) as { memberId: string; entries: { seq: number }[]; nextCursor: string | null };
        expect(page.memberId).toBe('ann');
        expect(page.entries.length).toBeGreaterThanOrEqual(1);
        if (page.entries.length > 1) expect(Buffer.byteLength(text)).toBeLessThanOrEqual(bytesMax);
        seen.push(...page.entries);
        if (page.nextCursor === null) break;
        afterSeq = decodeCursor(page.nextCursor)!;
        expect(afterSeq).toBe(page.entries.at(-1)!.seq);
      }
      expect(seen, `bytesMax ${bytesMax}`).toEqual(all);
    }
  });
});
