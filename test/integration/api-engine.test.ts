import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/nats-core';
// ajv 8 comes with fastify (its JSON schema compiler); the named export types under NodeNext.
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WalletRouter, WalletRoutingError } from '../../src/cluster/wallet-routing.js';
import { partitionOf } from '../../src/routing/partitioner.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { PROJECT_ROOT, sleep, startEngineProcess, tempDataDir, type EngineProcess } from '../helpers/engine-process.js';

/**
 * Every endpoint of the HTTP API (and the NATS wallet service) against the
 * real thing: a nats-server, the engine as a child process with the retail
 * program, its actors and LMDB. One engine for the file: each test uses its
 * own members; the program test runs last because it changes the program.
 *
 * Event times are fixed in October 2026, outside the retail promotions
 * (Cyber Week starts 2026-11-23 at +01:00), so purchases earn the base rate
 * only: 1 point per euro, pending for 14 days.
 */

const TOKENS = {
  admin: 'admin-token-0123456789',
  read: 'read-token-0123456789',
  write: 'write-token-0123456789',
  desk: 'desk-token-0123456789abcdef',
} as const;
type TokenName = keyof typeof TOKENS;
const TOKEN_LIST = `admin:${TOKENS.admin},read:${TOKENS.read},write:${TOKENS.write},write:${TOKENS.desk}:support-desk`;
/** docs/api.md: an unnamed token is called `<role>-<first 8 hex digits of its SHA-256>`. */
const unnamed = (role: string, token: string) => `${role}-${createHash('sha256').update(token).digest('hex').slice(0, 8)}`;
const WRITE_NAME = unnamed('write', TOKENS.write);
const ADMIN_NAME = unnamed('admin', TOKENS.admin);
const RETAIL = readFileSync(`${PROJECT_ROOT}/config/programs/retail.yaml`, 'utf8');

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

describe('HTTP API against a running engine', () => {
  let server: TestNatsServer;
  let nc: NatsConnection;
  let engine: EngineProcess;
  let data: { path: string; remove(): void };
  let base = '';

  async function call(
    method: string,
    path: string,
    options: { token?: TokenName | null; body?: unknown; raw?: string; contentType?: string; headers?: Record<string, string> } = {},
  ): Promise<Reply> {
    const headers: Record<string, string> = { ...options.headers };
    const token = options.token === undefined ? 'read' : options.token;
    if (token !== null) headers.authorization = `Bearer ${TOKENS[token]}`;
    let body: string | undefined;
    if (options.raw !== undefined) {
      body = options.raw;
      headers['content-type'] = options.contentType ?? 'text/plain';
    } else if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] = 'application/json';
    }
    const response = await fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, headers: response.headers, text, json };
  }

  const get = (path: string, token: TokenName | null = 'read') => call('GET', path, { token });
  const post = (path: string, body?: unknown, token: TokenName = 'write', headers?: Record<string, string>) =>
    call('POST', path, { token, ...(body !== undefined ? { body } : {}), ...(headers !== undefined ? { headers } : {}) });
  const wallet = async (memberId: string) => {
    const reply = await get(`/v1/members/${memberId}/wallet`);
    expect(reply.status, reply.text).toBe(200);
    return reply.json;
  };
  const points = async (memberId: string) => (await wallet(memberId)).currencies.find((c: { currency: string }) => c.currency === 'points');
  const ledger = async (memberId: string, query = 'limit=500') => {
    const reply = await get(`/v1/members/${memberId}/ledger?${query}`);
    expect(reply.status, reply.text).toBe(200);
    return reply.json.entries as Record<string, unknown>[];
  };
  const enroll = async (memberId: string) => {
    const reply = await post(`/v1/members/${memberId}/enroll?wait=true`, {});
    expect(reply.status, reply.text).toBe(200);
    expect(reply.json.result).toBe('applied');
  };
  const purchase = (id: string, memberId: string, amountMinor: number, occurredAt = '2026-10-05T10:00:00Z') => ({
    id,
    memberId,
    type: 'purchase',
    occurredAt,
    amountMinor,
    currency: 'EUR',
  });
  /** The error shape every failure shares. */
  const expectError = (reply: Reply, status: number, code: string) => {
    expect(reply.status, reply.text).toBe(status);
    expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
    expect(reply.json).toEqual({ error: expect.objectContaining({ code, message: expect.any(String) }) });
    expect(Object.keys(reply.json.error).every((key) => ['code', 'message', 'details'].includes(key))).toBe(true);
  };
  const issueFields = (reply: Reply) => (reply.json.error.details.issues as { field: string }[]).map((issue) => issue.field).sort();

  beforeAll(async () => {
    server = await startTestNatsServer();
    nc = await connectTest(server.url);
    data = tempDataDir('loyalty-api-engine-');
    engine = await startEngineProcess({
      natsUrl: server.url,
      dataDir: data.path,
      programFile: `${PROJECT_ROOT}/config/programs/retail.yaml`,
      // No scheduled sweep: the purchases here are dated weeks ago, so by the wall clock their pending points
      // are due, and a sweep would add release entries to ledgers between a test's reads. Releases still
      // happen, at event time, when a member's own events arrive.
      env: { LOYALTY_API_TOKENS: TOKEN_LIST, LOYALTY_ACTORS: '2', LOYALTY_SWEEP_INTERVAL_MS: '86400000' },
    });
    base = `http://127.0.0.1:${engine.httpPort}`;
  });

  afterAll(async () => {
    if (engine !== undefined) expect(await engine.stop()).toBe(0);
    await nc?.close();
    await server?.stop();
    data?.remove();
  });

  it('authenticates: /health is open, no token → 401 with WWW-Authenticate, a low role → 403', async () => {
    const health = await get('/health', null);
    expect(health.status).toBe(200);
    expect(health.json).toMatchObject({ status: 'ok', consuming: true });

    for (const path of ['/v1/members/ann/wallet', '/v1/program', '/metrics', '/openapi.json', '/v1/no-such-route']) {
      const anonymous = await get(path, null);
      expectError(anonymous, 401, 'UNAUTHORIZED');
      expect(anonymous.headers.get('www-authenticate')).toBe('Bearer realm="loyalty"');
    }
    const unknown = await call('GET', '/v1/program', { token: null, headers: { authorization: 'Bearer not-a-known-token-at-all' } });
    expectError(unknown, 401, 'UNAUTHORIZED');
    expect(unknown.headers.get('www-authenticate')).toBe('Bearer realm="loyalty", error="invalid_token"');

    // read < write < admin
    const readOnWrite = await post('/v1/events', purchase('auth-1', 'auth-1', 100), 'read');
    expectError(readOnWrite, 403, 'FORBIDDEN');
    expect(readOnWrite.json.error.details).toEqual({ required: 'write', role: 'read' });
    expectError(await post('/v1/members/ann/adjustments', { direction: 'credit', points: 1, reason: 'x' }, 'read'), 403, 'FORBIDDEN');
    expectError(await call('POST', '/v1/bulk/adjustments', { token: 'read', raw: 'memberId,direction,points,reason\n', contentType: 'text/csv' }), 403, 'FORBIDDEN');
    const writeOnAdmin = await call('POST', '/v1/program/activate', { token: 'write', raw: RETAIL, contentType: 'application/yaml' });
    expectError(writeOnAdmin, 403, 'FORBIDDEN');
    expect(writeOnAdmin.json.error.details).toEqual({ required: 'admin', role: 'write' });
    expectError(await post('/v1/members/ann/erase', undefined, 'write'), 403, 'FORBIDDEN');

    // Authorized: every role reads, and a higher role may do what a lower one may.
    for (const token of ['read', 'write', 'admin'] as const) {
      expect((await get('/v1/program', token)).status).toBe(200);
      const metrics = await get('/metrics', token);
      expect(metrics.status).toBe(200);
      expect(metrics.text).toContain('loyalty_events_total');
    }
    const byAdmin = await call('POST', '/v1/events?wait=true', { token: 'admin', body: purchase('auth-2', 'auth-2', 1_000) });
    expect(byAdmin.status, byAdmin.text).toBe(200);
    expect(byAdmin.json.result).toBe('applied');
    expectError(await get('/v1/members/nobody-here/wallet'), 404, 'MEMBER_NOT_FOUND');
    expectError(await get('/v1/no-such-route'), 404, 'NOT_FOUND');
  });

  it('POST /v1/events?wait=true returns the outcome from the actors; the same id again returns it again and changes nothing', async () => {
    const event = purchase('order-1', 'evt-ann', 12_345);
    const first = await post('/v1/events?wait=true', event);
    expect(first.status, first.text).toBe(200);
    expect(first.json).toMatchObject({ eventId: 'order-1', duplicate: false, accepted: true, result: 'applied' });
    expect(first.json.sequence).toBeGreaterThan(0);
    // First event of an unknown member: enrolled automatically, then 123 points pending for 14 days.
    expect(first.json.outcomes).toEqual([
      expect.objectContaining({ kind: 'membership', action: 'enrolled', eventId: 'order-1', memberId: 'evt-ann' }),
      expect.objectContaining({ kind: 'balance', currency: 'points', delta: 0, pendingDelta: 123, qualifyingDelta: 123, spendable: 0, pending: 123 }),
    ]);

    // Within the stream's duplicate window (the API re-sends it under another message id so the actor answers) ...
    const again = await post('/v1/events?wait=true', event);
    expect(again.status, again.text).toBe(200);
    expect(again.json).toMatchObject({ eventId: 'order-1', duplicate: true, sequence: first.json.sequence, result: 'applied' });
    expect(again.json.outcomes).toEqual(first.json.outcomes);
    // ... and with another body under the same id: the first outcome, the body ignored.
    const changed = await post('/v1/events?wait=true', { ...event, amountMinor: 99_999 });
    expect(changed.status, changed.text).toBe(200);
    expect(changed.json.outcomes).toEqual(first.json.outcomes);

    // One effect: the wallet (read right after the waited outcome) and the ledger. The wallet shows the
    // points as released once their 14 days are over by the wall clock, so count pending and spendable together.
    const balance = await points('evt-ann');
    expect(balance.spendable + balance.pending).toBe(123);
    expect(balance.qualifying).toBe(123);
    const entries = await ledger('evt-ann');
    expect(entries.map((entry) => [entry.eventId, entry.kind, entry.balance, entry.points])).toEqual([
      ['order-1', 'earn', 'pending', 123],
      ['order-1', 'earn', 'qualifying', 123],
    ]);

    // Without wait: 202 as soon as the stream stored it.
    const noWait = await post('/v1/events', purchase('order-2', 'evt-ann', 1_000, '2026-10-06T10:00:00Z'));
    expect(noWait.status, noWait.text).toBe(202);
    expect(noWait.json).toEqual({ eventId: 'order-2', sequence: expect.any(Number), duplicate: false, accepted: true });
    expect(noWait.json.sequence).toBeGreaterThan(first.json.sequence);

    // Operator endpoints: the Idempotency-Key is the event id.
    const credit = () => post('/v1/members/evt-ann/adjustments?wait=true', { direction: 'credit', points: 7, reason: 'retry me' }, 'write', { 'idempotency-key': 'ticket-7' });
    const once = await credit();
    const twice = await credit();
    expect(once.json).toMatchObject({ eventId: 'ticket-7', result: 'applied' });
    expect(twice.json).toMatchObject({ eventId: 'ticket-7', duplicate: true, result: 'applied', outcomes: once.json.outcomes });
    const afterCredit = await points('evt-ann');
    expect(afterCredit.spendable + afterCredit.pending).toBe(7 + 123 + 10);
    expect(afterCredit.qualifying).toBe(133);
    expect((await ledger('evt-ann', 'kind=adjustment')).map((entry) => [entry.eventId, entry.points])).toEqual([['ticket-7', 7]]);
  });

  it('adjusts with wait: credit and debit show in the wallet and in the ledger with operator and reason', async () => {
    await enroll('adj-1');
    const credit = await post('/v1/members/adj-1/adjustments?wait=true', { direction: 'credit', points: 250, reason: 'late delivery, order 4711' });
    expect(credit.status, credit.text).toBe(200);
    expect(credit.json.result).toBe('applied');
    expect(credit.json.outcomes).toEqual([expect.objectContaining({ kind: 'balance', delta: 250, spendable: 250 })]);
    expect((await points('adj-1')).spendable).toBe(250);

    const debit = await post('/v1/members/adj-1/adjustments?wait=true', { direction: 'debit', points: 100, reason: 'duplicate credit' }, 'desk');
    expect(debit.status, debit.text).toBe(200);
    expect(debit.json.outcomes).toEqual([expect.objectContaining({ kind: 'balance', delta: -100, spendable: 150 })]);
    expect((await points('adj-1')).spendable).toBe(150);

    // A debit beyond the balance: 200 with the rejection (the request worked, the rules said no); nothing moves.
    const tooMuch = await post('/v1/members/adj-1/adjustments?wait=true', { direction: 'debit', points: 1_000, reason: 'oops' });
    expect(tooMuch.status, tooMuch.text).toBe(200);
    expect(tooMuch.json).toMatchObject({ result: 'rejected', rejection: { code: 'INSUFFICIENT_POINTS', reason: expect.stringContaining('150') } });

    // Through /v1/events: no operator → the token's name; another operator needs admin.
    const viaEvents = { id: 'adj-ev-1', memberId: 'adj-1', type: 'adjustment', occurredAt: new Date().toISOString(), direction: 'credit', points: 5, currency: 'points', reason: 'via events' };
    expect((await post('/v1/events?wait=true', viaEvents, 'desk')).json.result).toBe('applied');
    expectError(await post('/v1/events?wait=true', { ...viaEvents, id: 'adj-ev-2', operator: 'someone-else' }, 'write'), 403, 'FORBIDDEN');
    expect((await post('/v1/events?wait=true', { ...viaEvents, id: 'adj-ev-3', operator: 'night-batch' }, 'admin')).json.result).toBe('applied');
    expect((await post('/v1/members/adj-1/adjustments?wait=true', { direction: 'credit', points: 1, reason: 'by admin' }, 'admin')).json.result).toBe('applied');

    const adjustments = await ledger('adj-1', 'kind=adjustment');
    expect(adjustments.map((entry) => [entry.kind, entry.balance, entry.points, entry.operator, entry.reason])).toEqual([
      ['adjustment', 'spendable', 250, WRITE_NAME, 'late delivery, order 4711'],
      ['adjustment', 'spendable', -100, 'support-desk', 'duplicate credit'],
      ['adjustment', 'spendable', 5, 'support-desk', 'via events'],
      ['adjustment', 'spendable', 5, 'night-batch', 'via events'],
      ['adjustment', 'spendable', 1, ADMIN_NAME, 'by admin'],
    ]);
    expect((await points('adj-1')).spendable).toBe(161);
    // Unknown member: an operator's typo must not enroll anyone.
    expectError(await post('/v1/members/adj-nobody/adjustments?wait=true', { direction: 'credit', points: 1, reason: 'x' }), 404, 'MEMBER_NOT_FOUND');
    expectError(await get('/v1/members/adj-nobody/wallet'), 404, 'MEMBER_NOT_FOUND');
  });

  it('refuses bad requests with 400/422, naming every bad field, in the JSON error shape', async () => {
    await enroll('bad-1');
    const adjustment = await post('/v1/members/bad-1/adjustments', { direction: 'sideways', points: -3, currency: 'Points!', extra: true });
    expectError(adjustment, 400, 'VALIDATION_FAILED');
    expect(issueFields(adjustment)).toEqual(['body', 'body.currency', 'body.direction', 'body.points', 'body.reason']);
    expect(adjustment.json.error.message).toContain('body.points');

    const event = await post('/v1/events', { id: '', memberId: 'a b', type: 'purchase', occurredAt: 'yesterday', amountMinor: -1, currency: 'eur' });
    expectError(event, 400, 'VALIDATION_FAILED');
    expect(issueFields(event)).toEqual(['body.amountMinor', 'body.currency', 'body.id', 'body.memberId', 'body.occurredAt']);
    expectError(await post('/v1/events', { id: 'x', memberId: 'bad-1', type: 'teleport', occurredAt: '2026-10-05T10:00:00Z' }), 400, 'VALIDATION_FAILED');
    expectError(await post('/v1/events', [1, 2]), 400, 'VALIDATION_FAILED');
    expectError(await call('POST', '/v1/events', { token: 'write', raw: '{"id":"x', contentType: 'application/json' }), 400, 'INVALID_JSON');
    expectError(await call('POST', '/v1/events', { token: 'write', raw: 'id=x', contentType: 'application/x-www-form-urlencoded' }), 415, 'UNSUPPORTED_MEDIA_TYPE');

    const redemption = await post('/v1/members/bad-1/redemptions', { rewardId: '', points: 0, currency: 'miles' });
    expectError(redemption, 400, 'VALIDATION_FAILED');
    expect(issueFields(redemption)).toEqual(['body.points', 'body.rewardId']);
    const currency = await post('/v1/members/bad-1/redemptions', { rewardId: 'voucher-5', points: 500, currency: 'miles' });
    expectError(currency, 400, 'VALIDATION_FAILED');
    expect(issueFields(currency)).toEqual(['body.currency']);
    const key = await post('/v1/members/bad-1/adjustments', { direction: 'credit', points: 1, reason: 'x' }, 'write', { 'idempotency-key': 'k'.repeat(129) });
    expectError(key, 400, 'VALIDATION_FAILED');
    expect(issueFields(key)).toEqual(['headers.idempotency-key']);
    const wait = await post('/v1/members/bad-1/adjustments?wait=maybe&timeoutMs=999999', { direction: 'credit', points: 1, reason: 'x' });
    expectError(wait, 400, 'VALIDATION_FAILED');
    expect(issueFields(wait)).toEqual(['querystring.timeoutMs', 'querystring.wait']);

    const ledgerQuery = await get('/v1/members/bad-1/ledger?limit=0&kind=bogus&from=never');
    expectError(ledgerQuery, 400, 'VALIDATION_FAILED');
    expect(issueFields(ledgerQuery)).toEqual(['querystring.from', 'querystring.kind.0', 'querystring.limit']);
    const badCursor = await get('/v1/members/bad-1/ledger?cursor=bm90LWEtY3Vyc29y');
    expectError(badCursor, 400, 'VALIDATION_FAILED');
    expect(issueFields(badCursor)).toEqual(['querystring.cursor']);
    const memberId = await get('/v1/members/not%20valid/wallet');
    expectError(memberId, 400, 'VALIDATION_FAILED');
    expect(issueFields(memberId)).toEqual(['params.memberId']);
    const kpis = await get('/v1/reports/kpis?period=year&format=xml');
    expectError(kpis, 400, 'VALIDATION_FAILED');
    expect(issueFields(kpis)).toEqual(['querystring.format', 'querystring.period']);

    const header = await call('POST', '/v1/bulk/adjustments', { token: 'write', raw: 'memberId,direction,colour\nbad-1,credit,red\n', contentType: 'text/csv' });
    expectError(header, 400, 'VALIDATION_FAILED');
    expect(header.json.error.message).toMatch(/unknown column "colour".*missing column "points".*missing column "reason"/);
    expectError(await call('POST', '/v1/bulk/adjustments', { token: 'write', raw: 'memberId,direction,points,reason\n', contentType: 'application/pdf' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('pages a ledger of 30 purchases with limit=7 to the end, without duplicates or gaps, and filters by kind and time', async () => {
    // 30 purchases on 30 days of October, 10 to 300 euros, and two credits on the 15th, sent without waiting but
    // the last one: a member's events are applied in stream order, so its outcome means all are applied.
    for (let day = 1; day <= 30; day++) {
      const occurredAt = `2026-10-${String(day).padStart(2, '0')}T10:00:00Z`;
      const reply = await post(day === 30 ? '/v1/events?wait=true' : '/v1/events', purchase(`pg-${day}`, 'pager', 1_000 * day, occurredAt));
      expect(reply.status, reply.text).toBe(day === 30 ? 200 : 202);
      if (day === 15) {
        for (const id of ['pg-adj-1', 'pg-adj-2']) {
          const credit = await post('/v1/members/pager/adjustments?wait=true', { direction: 'credit', points: 11, reason: 'goodwill', occurredAt: '2026-10-15T12:00:00Z' }, 'write', { 'idempotency-key': id });
          expect(credit.json.result).toBe('applied');
        }
      }
    }
    const all = await ledger('pager');
    expect(all.length).toBeGreaterThan(60);
    expect(all.map((entry) => entry.seq)).toEqual(all.map((_, index) => index + 1));
    // Every purchase earned its base points: 10 + 20 + ... + 300 euros → 4,650 points (pending, then released).
    const earnedBase = all.filter((entry) => entry.kind === 'earn' && entry.ruleId === 'earn:base' && entry.balance === 'pending');
    expect(earnedBase.reduce((sum, entry) => sum + (entry.points as number), 0)).toBe(4_650);
    expect(new Set(earnedBase.map((entry) => entry.eventId)).size).toBe(30);

    const pageThrough = async (query: string) => {
      const seen: Record<string, unknown>[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const reply = await get(`/v1/members/pager/ledger?limit=7&${query}${cursor === null ? '' : `&cursor=${cursor}`}`);
        expect(reply.status, reply.text).toBe(200);
        expect(reply.json.entries.length).toBeLessThanOrEqual(7);
        seen.push(...reply.json.entries);
        cursor = reply.json.nextCursor;
        pages += 1;
        expect(pages).toBeLessThan(100);
      } while (cursor !== null);
      return { seen, pages };
    };
    const everything = await pageThrough('');
    const seqs = (entries: Record<string, unknown>[]) => entries.map((entry) => entry.seq).join(',');
    expect(seqs(everything.seen), `paged ${everything.seen.length} entries in ${everything.pages} pages, one page had ${all.length}`).toBe(seqs(all));
    expect(everything.seen).toEqual(all);
    expect(everything.pages).toBe(Math.ceil(all.length / 7));

    const adjustments = await pageThrough('kind=adjustment');
    expect(adjustments.seen.map((entry) => [entry.eventId, entry.points])).toEqual([
      ['pg-adj-1', 11],
      ['pg-adj-2', 11],
    ]);
    const kinds = await pageThrough('kind=earn&kind=adjustment');
    expect(kinds.seen).toEqual(all.filter((entry) => entry.kind === 'earn' || entry.kind === 'adjustment'));
    expect(kinds.seen.length).toBeGreaterThan(60);

    // Event time: [10 October, 20 October) holds the purchases of days 10 to 19, the two credits, and releases.
    const from = Date.parse('2026-10-10T00:00:00Z');
    const to = Date.parse('2026-10-20T00:00:00Z');
    const window = await pageThrough('from=2026-10-10&to=2026-10-20T00:00:00Z');
    expect(window.seen).toEqual(all.filter((entry) => Date.parse(entry.occurredAt as string) >= from && Date.parse(entry.occurredAt as string) < to));
    const purchasesInWindow = new Set(window.seen.filter((entry) => entry.kind === 'earn').map((entry) => entry.eventId));
    expect([...purchasesInWindow].sort()).toEqual(Array.from({ length: 10 }, (_, index) => `pg-${index + 10}`).sort());
    const both = await pageThrough('kind=adjustment&from=2026-10-15T11:00:00Z&to=2026-10-15T13:00:00Z');
    expect(both.seen.map((entry) => entry.eventId)).toEqual(['pg-adj-1', 'pg-adj-2']);
    expectError(await get('/v1/members/pager/ledger?from=2026-10-20&to=2026-10-10'), 400, 'VALIDATION_FAILED');
  });

  it('redeems and cancels, redeems a Gold voucher, and enrolls, unenrolls and erases (admin)', async () => {
    await enroll('red-1');
    expect((await post('/v1/members/red-1/adjustments?wait=true', { direction: 'credit', points: 600, reason: 'seed' })).json.result).toBe('applied');
    const redeemed = await post('/v1/members/red-1/redemptions?wait=true', { rewardId: 'voucher-5', points: 500 }, 'write', { 'idempotency-key': 'red-1-a' });
    expect(redeemed.status, redeemed.text).toBe(200);
    expect(redeemed.json.outcomes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'redemption', status: 'redeemed', redemptionId: 'red-1-a', rewardId: 'voucher-5', points: 500 }),
        expect.objectContaining({ kind: 'balance', delta: -500, spendable: 100 }),
      ]),
    );
    expect((await points('red-1')).spendable).toBe(100);
    const refused = await post('/v1/members/red-1/redemptions?wait=true', { rewardId: 'voucher-5', points: 500 });
    expect(refused.json).toMatchObject({ result: 'rejected', rejection: { code: 'INSUFFICIENT_POINTS' } });
    expect((await post('/v1/members/red-1/redemptions?wait=true', { rewardId: 'no-such-reward', points: 5 })).json.rejection.code).toBe('REWARD_UNKNOWN');
    expect((await post('/v1/members/red-1/redemptions?wait=true', { rewardId: 'voucher-5', points: 50 })).json.rejection.code).toBe('REWARD_PRICE_MISMATCH');

    const cancelled = await post('/v1/members/red-1/redemptions/red-1-a/cancel?wait=true');
    expect(cancelled.status, cancelled.text).toBe(200);
    expect(cancelled.json.outcomes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'redemption', status: 'cancelled', redemptionId: 'red-1-a' }),
        expect.objectContaining({ kind: 'balance', delta: 500, spendable: 600 }),
      ]),
    );
    expect((await points('red-1')).spendable).toBe(600);
    expect((await post('/v1/members/red-1/redemptions/red-1-a/cancel?wait=true')).json.rejection.code).toBe('REDEMPTION_NOT_FOUND');
    expect((await ledger('red-1', 'kind=redeem,redeem_cancel')).map((entry) => [entry.kind, entry.points, entry.reference])).toEqual([
      ['redeem', -500, 'voucher-5'],
      ['redeem_cancel', 500, 'red-1-a'],
    ]);

    // 2,000 qualifying points make a Gold member: tier outcome, the Gold voucher and the Silver shipping entitlement.
    await enroll('gold-1');
    const lounge = await post('/v1/members/gold-1/redemptions?wait=true', { rewardId: 'gold-lounge', points: 1_000 });
    expect(lounge.json.rejection.code).toBe('REWARD_NOT_ALLOWED'); // a Gold reward
    const status = await post('/v1/members/gold-1/adjustments?wait=true', { direction: 'credit', points: 2_000, reason: 'status match', qualifying: true });
    expect(status.json.outcomes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'tier', fromTierId: 'member', toTierId: 'gold', direction: 'up' }),
        expect.objectContaining({ kind: 'benefit', benefitId: 'gold-welcome', benefitKind: 'voucher', code: expect.stringMatching(/^GOLD-/) }),
        expect.objectContaining({ kind: 'benefit', benefitId: 'silver-shipping', benefitKind: 'free_shipping' }),
      ]),
    );
    const goldWallet = await wallet('gold-1');
    expect(goldWallet.tier.id).toBe('gold');
    const voucher = goldWallet.vouchers.find((item: { benefitId: string }) => item.benefitId === 'gold-welcome');
    const shipping = goldWallet.vouchers.find((item: { benefitId: string }) => item.benefitId === 'silver-shipping');
    expect(voucher).toMatchObject({ kind: 'voucher', code: expect.stringMatching(/^GOLD-/) });
    const used = await post(`/v1/members/gold-1/vouchers/${voucher.code}/redeem?wait=true`);
    expect(used.status, used.text).toBe(200);
    expect(used.json.outcomes).toEqual([expect.objectContaining({ kind: 'voucher_redeemed', code: voucher.code, benefitId: 'gold-welcome' })]);
    expect((await wallet('gold-1')).vouchers.map((item: { benefitId: string }) => item.benefitId)).toEqual(['silver-shipping']);
    expect((await post(`/v1/members/gold-1/vouchers/${voucher.code}/redeem?wait=true`)).json.rejection.code).toBe('VOUCHER_ALREADY_REDEEMED');
    expect((await post(`/v1/members/gold-1/vouchers/${shipping.code}/redeem?wait=true`)).json.rejection.code).toBe('VOUCHER_NOT_REDEEMABLE');
    expect((await post('/v1/members/gold-1/vouchers/GOLD-NOPE/redeem?wait=true')).json.rejection.code).toBe('VOUCHER_UNKNOWN');
    expect((await post('/v1/members/gold-1/redemptions?wait=true', { rewardId: 'gold-lounge', points: 1_000 })).json.result).toBe('applied');

    // Membership: enroll (write), update, unenroll (write), erase (admin only).
    const enrolled = await post('/v1/members/life-1/enroll?wait=true', { attributes: { country: 'DE' }, segments: ['vip'] });
    expect(enrolled.json.outcomes).toEqual([expect.objectContaining({ kind: 'membership', action: 'enrolled' })]);
    expect((await post('/v1/members/life-1/enroll?wait=true', { segments: ['newsletter'] })).json.outcomes).toEqual([
      expect.objectContaining({ kind: 'membership', action: 'updated' }),
    ]);
    expect((await post('/v1/members/life-1/adjustments?wait=true', { direction: 'credit', points: 40, reason: 'welcome' })).json.result).toBe('applied');
    const left = await post('/v1/members/life-1/unenroll?wait=true');
    expect(left.json.outcomes).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'membership', action: 'unenrolled' })]));
    const afterLeaving = await wallet('life-1');
    expect(afterLeaving.status).toBe('unenrolled');
    expect(afterLeaving.currencies[0].spendable).toBe(0); // retail forfeits on unenroll
    expect((await ledger('life-1', 'kind=forfeit')).map((entry) => [entry.balance, entry.points])).toEqual([['spendable', -40]]);
    expect((await post('/v1/events?wait=true', purchase('life-p1', 'life-1', 1_000))).json.rejection.code).toBe('MEMBER_NOT_ACTIVE');
    expectError(await post('/v1/members/life-1/erase?wait=true', undefined, 'write'), 403, 'FORBIDDEN');
    expectError(await post('/v1/events', { id: 'erase-1', memberId: 'life-1', type: 'erase', occurredAt: new Date().toISOString() }, 'write'), 403, 'FORBIDDEN');
    const erased = await post('/v1/members/life-1/erase?wait=true', undefined, 'admin');
    expect(erased.status, erased.text).toBe(200);
    expect(erased.json.outcomes).toEqual([expect.objectContaining({ kind: 'membership', action: 'erased' })]);
    expect((await wallet('life-1')).status).toBe('erased');
    expect((await post('/v1/members/life-1/enroll?wait=true', {})).json.rejection.code).toBe('MEMBER_ERASED');
    expectError(await post('/v1/members/nobody-x/unenroll?wait=true'), 404, 'MEMBER_NOT_FOUND');
  });

  describe('bulk adjustments', () => {
    const FILE = [
      'memberId,direction,points,reason,id',
      'bulk-a,credit,100,"goodwill, batch 1",bk-1', // line 2: applied
      'bulk-b,credit,50,goodwill,bk-2', // line 3: applied
      'bulk-a,debit,30,correction,bk-3', // line 4: applied
      'bad member!,credit,10,typo,bk-4', // line 5: invalid member id
      'bulk-a,credit,-5,negative,bk-5', // line 6: invalid points
      'bulk-b,sideways,5,what,bk-6', // line 7: invalid direction
      'bulk-b,credit,5', // line 8: a missing column
      'bulk-b,debit,999,too much,bk-8', // line 9: rejected by the actor
      'ghost-member,credit,5,unknown,bk-9', // line 10: unknown member
      'bulk-a,credit,1,again,bk-1', // line 11: id already on line 2
      '',
    ].join('\n');

    const waitForJob = async (jobId: string, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const status = await get(`/v1/bulk/${jobId}`);
        expect(status.status, status.text).toBe(200);
        if (!['running', 'awaiting_outcomes'].includes(status.json.state) || Date.now() > deadline) return status.json;
        await sleep(50);
      }
    };
    const upload = (headers: Record<string, string> = {}) => call('POST', '/v1/bulk/adjustments', { token: 'write', raw: FILE, contentType: 'text/csv', headers });

    it('applies every good line, gives every bad line its reason, and counts them all', async () => {
      await enroll('bulk-a');
      await enroll('bulk-b');
      const started = await upload({ 'idempotency-key': 'bulk-job-1' });
      expect(started.status, started.text).toBe(202);
      expect(started.json).toMatchObject({ jobId: 'bulk-job-1', operator: WRITE_NAME, statusUrl: '/v1/bulk/bulk-job-1', reportUrl: '/v1/bulk/bulk-job-1/report' });
      const done = await waitForJob('bulk-job-1', 20_000);
      expect(done.state).toBe('completed');
      expect(done.counts).toEqual({ total: 10, invalid: 6, queued: 0, submitted: 4, applied: 3, rejected: 1, pending: 0, failed: 0, duplicates: 0 });

      const report = await get('/v1/bulk/bulk-job-1/report');
      const lines = report.text.trim().split('\n').map((line) => JSON.parse(line));
      const byLine = new Map(lines.map((line) => [line.line as number, line]));
      expect(lines.map((line) => line.line)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      for (const line of [2, 3, 4]) expect(byLine.get(line)).toMatchObject({ status: 'applied', sequence: expect.any(Number) });
      expect(byLine.get(5)).toMatchObject({ status: 'invalid', reason: expect.stringMatching(/^memberId: /) });
      expect(byLine.get(6)).toMatchObject({ status: 'invalid', reason: expect.stringMatching(/^points: /) });
      expect(byLine.get(7)).toMatchObject({ status: 'invalid', reason: expect.stringMatching(/^direction: /) });
      expect(byLine.get(8)).toMatchObject({ status: 'invalid', reason: 'expected 5 fields (memberId,direction,points,reason,id), found 3' });
      expect(byLine.get(9)).toMatchObject({ status: 'rejected', id: 'bk-8', reason: expect.stringMatching(/^INSUFFICIENT_POINTS: /) });
      expect(byLine.get(10)).toMatchObject({ status: 'invalid', reason: 'memberId: member ghost-member is not known' });
      expect(byLine.get(11)).toMatchObject({ status: 'invalid', reason: expect.stringMatching(/already on line 2/) });
      const csv = await call('GET', '/v1/bulk/bulk-job-1/report?status=invalid,rejected', { token: 'read', headers: { accept: 'text/csv' } });
      expect(csv.text.trim().split('\n')).toHaveLength(1 + 7);
      expect(csv.text.split('\n')[0]).toBe('line,id,memberId,status,reason,sequence,duplicate');

      expect((await points('bulk-a')).spendable).toBe(70);
      expect((await points('bulk-b')).spendable).toBe(50);
      expect((await ledger('bulk-a', 'kind=adjustment')).map((entry) => [entry.eventId, entry.points, entry.reason, entry.operator])).toEqual([
        ['bk-1', 100, 'goodwill, batch 1', WRITE_NAME],
        ['bk-3', -30, 'correction', WRITE_NAME],
      ]);

      // The same Idempotency-Key returns the job, it does not run again.
      const same = await upload({ 'idempotency-key': 'bulk-job-1' });
      expect(same.status, same.text).toBe(200);
      expect(same.json).toMatchObject({ jobId: 'bulk-job-1', state: 'completed' });
    });

    let reupload: any;

    it('a re-upload of the same file with ids changes no wallet', async () => {
      const again = await upload();
      expect(again.status, again.text).toBe(202);
      // Up to 5 s for the job to finish (it should take milliseconds; see the next test), and for the actors
      // to apply anything that would get through.
      reupload = await waitForJob(again.json.jobId, 5_000);
      expect((await points('bulk-a')).spendable).toBe(70);
      expect((await points('bulk-b')).spendable).toBe(50);
      expect(await ledger('bulk-a', 'kind=adjustment')).toHaveLength(2);
      const report = (await get(`/v1/bulk/${again.json.jobId}/report`)).text.trim().split('\n').map((line) => JSON.parse(line));
      expect(report.filter((line) => line.status === 'invalid')).toHaveLength(6);
      expect(reupload.counts).toMatchObject({ total: 10, invalid: 6, submitted: 4, duplicates: 4 });
    });

    // Once a two-minute hang: JetStream's duplicate window dropped the re-uploaded lines, so no actor saw them
    // and no outcome came. The submitter now re-sends a stream duplicate under another message id, and the
    // actor answers with each line's first outcome, changing nothing.
    it('a re-upload of the same file with ids completes with every line applied or rejected (no 2-minute hang)', () => {
      expect(reupload.state).toBe('completed');
      expect(reupload.counts).toMatchObject({ applied: 3, rejected: 1, invalid: 6, pending: 0 });
    });
  });

  describe('GET /openapi.json', () => {
    const openapi = async (): Promise<any> => {
      const reply = await get('/openapi.json');
      expect(reply.status).toBe(200);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      return reply.json;
    };
    const refsOf = (document: unknown) => (JSON.stringify(document).match(/"\$ref":"[^"]*"/g) ?? []).map((ref) => ref.slice(8, -1));
    const resolve = (document: unknown, pointer: string) => {
      let target: unknown = document;
      for (const part of pointer.slice(2).split('/')) target = (target as Record<string, unknown> | undefined)?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
      return target;
    };

    it('is an OpenAPI 3 document listing every route, with responses, path parameters and JSON schemas', async () => {
      const document = await openapi();
      expect(document.openapi).toMatch(/^3\.\d+\.\d+$/);
      expect(document.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
      expect(document.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
      const routes = Object.entries(document.paths as Record<string, Record<string, unknown>>).flatMap(([path, operations]) =>
        Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`),
      );
      expect(routes.sort()).toEqual(
        [
          'GET /health',
          'GET /metrics',
          'GET /openapi.json',
          'GET /v1/members/{memberId}/wallet',
          'GET /v1/members/{memberId}/ledger',
          'POST /v1/events',
          'POST /v1/members/{memberId}/adjustments',
          'POST /v1/members/{memberId}/redemptions',
          'POST /v1/members/{memberId}/redemptions/{eventId}/cancel',
          'POST /v1/members/{memberId}/vouchers/{code}/redeem',
          'POST /v1/members/{memberId}/enroll',
          'POST /v1/members/{memberId}/unenroll',
          'POST /v1/members/{memberId}/erase',
          'POST /v1/bulk/adjustments',
          'GET /v1/bulk/{jobId}',
          'GET /v1/bulk/{jobId}/report',
          'GET /v1/program',
          'POST /v1/program/validate',
          'POST /v1/program/activate',
          'GET /v1/reports/kpis',
          'GET /v1/reports/program',
        ].sort(),
      );
      expect(document.paths['/health'].get.security).toEqual([]); // the one open endpoint
      expect(document.security).toEqual([{ bearer: [] }]);
      // What OpenAPI 3.0 requires of each operation, and schemas that are JSON Schema (ajv; strict: false lets
      // OpenAPI's own keywords through). Schemas with a $ref are left to the next test.
      const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
      let compiled = 0;
      for (const [path, operations] of Object.entries(document.paths as Record<string, Record<string, Record<string, unknown>>>)) {
        expect(path.startsWith('/')).toBe(true);
        const names = [...path.matchAll(/\{([^}]+)\}/g)].map((match) => match[1]);
        for (const [method, operation] of Object.entries(operations)) {
          const where = `${method.toUpperCase()} ${path}`;
          expect(['get', 'post', 'put', 'delete', 'patch'], where).toContain(method);
          expect(typeof operation.summary, `${where} summary`).toBe('string');
          const schemas: unknown[] = [];
          const responses = operation.responses as Record<string, { description?: string; content?: Record<string, { schema: unknown }> }>;
          expect(Object.keys(responses).length, `${where} responses`).toBeGreaterThan(0);
          expect(Object.keys(responses).some((status) => status.startsWith('2')), `${where} has a 2xx response`).toBe(true);
          for (const [status, response] of Object.entries(responses)) {
            expect(status, where).toMatch(/^([1-5]\d\d|default)$/);
            expect(typeof response.description, `${where} ${status} description`).toBe('string');
            for (const media of Object.values(response.content ?? {})) schemas.push(media.schema);
          }
          const parameters = (operation.parameters ?? []) as { name: string; in: string; required?: boolean; schema?: unknown }[];
          for (const parameter of parameters) {
            expect(['path', 'query', 'header', 'cookie'], where).toContain(parameter.in);
            if (parameter.schema !== undefined) schemas.push(parameter.schema);
          }
          for (const name of names) {
            expect(parameters.find((parameter) => parameter.in === 'path' && parameter.name === name), `${where} declares {${name}}`).toMatchObject({ required: true });
          }
          const body = operation.requestBody as { content?: Record<string, { schema: unknown }> } | undefined;
          for (const media of Object.values(body?.content ?? {})) schemas.push(media.schema);
          for (const schema of schemas.filter((item) => refsOf(item).length === 0)) {
            expect(() => ajv.compile(schema as object), where).not.toThrow();
            compiled += 1;
          }
        }
      }
      expect(compiled).toBeGreaterThan(30);
      expect(document.paths['/v1/members/{memberId}/ledger'].get.parameters.map((parameter: { name: string }) => parameter.name).sort()).toEqual(['cursor', 'from', 'kind', 'limit', 'memberId', 'to']);
    });

    // Once a bug, now fixed: errorBodySchema carried `.meta({ id: 'Error' })`, so every error response pointed at
    // #/components/schemas/Error, which @fastify/swagger never emitted. The schema is now inlined.
    it('every $ref of the document resolves', async () => {
      const document = await openapi();
      const refs = refsOf(document);
      // Error responses carry the error body's schema (inlined, so nothing dangles).
      expect(JSON.stringify(document)).toMatch(/"error":\{"type":"object"/);
      for (const pointer of refs) {
        expect(pointer.startsWith('#/'), pointer).toBe(true);
        expect(resolve(document, pointer), `${pointer} resolves`).toBeDefined();
      }
    });
  });

  it('answers loyalty.svc.wallet over NATS from the store, like GET /wallet', async () => {
    await enroll('svc-1');
    expect((await post('/v1/members/svc-1/adjustments?wait=true', { direction: 'credit', points: 42, reason: 'svc' })).json.result).toBe('applied');
    const reply = await nc.request('loyalty.svc.wallet', JSON.stringify({ memberId: 'svc-1' }), { timeout: 5_000 });
    const overNats = reply.json<Record<string, unknown>>();
    const overHttp = await wallet('svc-1');
    expect(overNats).toMatchObject({ memberId: 'svc-1', status: 'active', currencies: [expect.objectContaining({ currency: 'points', spendable: 42 })] });
    expect({ ...overNats, asOf: null }).toEqual({ ...overHttp, asOf: null });

    const missing = await nc.request('loyalty.svc.wallet', JSON.stringify({ memberId: 'svc-nobody' }), { timeout: 5_000 });
    expect(missing.headers?.get('Nats-Service-Error-Code')).toBe('404');
    expect(missing.headers?.get('Loyalty-Error-Code')).toBe('MEMBER_NOT_FOUND');
    const bad = await nc.request('loyalty.svc.wallet', JSON.stringify({ memberId: 'not valid' }), { timeout: 5_000 });
    expect(bad.headers?.get('Loyalty-Error-Code')).toBe('VALIDATION_FAILED');
  });

  it('answers wallet reads by partition (loyalty.svc.wallet.p<N>, WalletRouter) for every partition, byte for byte the HTTP wallet', async () => {
    await enroll('svc-2');
    expect((await post('/v1/members/svc-2/adjustments?wait=true', { direction: 'credit', points: 17, reason: 'svc' })).json.result).toBe('applied');
    const router = new WalletRouter(nc, { partitions: 64, handoverWaitMs: 500 });
    const reply = await router.walletReply('svc-2');
    expect(reply).toMatchObject({ partition: partitionOf('svc-2', 64), servedBy: expect.stringMatching(/^[A-Za-z0-9_-]{1,64}$/) });
    const overPartition = JSON.parse(reply.json) as Record<string, unknown>;
    expect(overPartition).toMatchObject({ memberId: 'svc-2', currencies: [expect.objectContaining({ spendable: 17 })] });
    expect({ ...overPartition, asOf: null }).toEqual({ ...(await wallet('svc-2')), asOf: null });
    // Every partition's subject has its responder (one instance owns all 64); an unknown member is a 404 from it.
    const members = Array.from({ length: 2_000 }, (_, index) => `probe-${index}`);
    const partitions = new Set(members.map((memberId) => partitionOf(memberId, 64)));
    expect(partitions.size).toBe(64);
    const firstOfEach = [...partitions].map((partition) => members.find((memberId) => partitionOf(memberId, 64) === partition)!);
    const failures = await Promise.all(firstOfEach.map((memberId) => router.wallet(memberId).then(() => undefined, (error: unknown) => error)));
    for (const failure of failures) expect(failure).toMatchObject({ code: 'MEMBER_NOT_FOUND' });
    expect(failures.every((failure) => failure instanceof WalletRoutingError)).toBe(true);
  });

  describe('program', () => {
    /** Retail with another base rate: 2 points per euro. */
    const DOUBLE_RATE = RETAIL.replace(/^ {2}points: 1 {13}# 1 point \.\.\.$/m, '  points: 2             # 2 points ...');
    const BAD = ['id: Retail Rewards', 'name: ""', 'currency: euro', 'utcOffsetMinutes: 9999', 'earn: { points: -1, perAmountMinor: 100, rounding: up }', 'tiers: []', ''].join('\n');

    it('reads, validates, activates a changed program without a restart, and refuses a bad one', async () => {
      expect(DOUBLE_RATE).not.toBe(RETAIL);
      const current = await get('/v1/program');
      expect(current.json).toMatchObject({ program: { id: 'retail', earn: { points: 1, perAmountMinor: 100 } }, source: 'file', since: expect.any(String) });

      const good = await call('POST', '/v1/program/validate', { token: 'write', raw: RETAIL, contentType: 'application/yaml' });
      expect(good.status, good.text).toBe(200);
      expect(good.json).toEqual({ valid: true, program: { id: 'retail', name: 'Retail rewards' } });
      const asJson = await call('POST', '/v1/program/validate', { token: 'write', raw: JSON.stringify(current.json.program), contentType: 'application/json' });
      expect(asJson.status, asJson.text).toBe(200);

      const bad = await call('POST', '/v1/program/validate', { token: 'write', raw: BAD, contentType: 'application/yaml' });
      expectError(bad, 422, 'PROGRAM_INVALID');
      const fields = (bad.json.error.details.errors as string[]).map((error) => error.slice(0, error.indexOf(':')));
      expect(fields.sort()).toEqual(['currency', 'earn.points', 'earn.rounding', 'id', 'name', 'tiers', 'utcOffsetMinutes']);
      expectError(await call('POST', '/v1/program/validate', { token: 'write', raw: 'id: [unclosed', contentType: 'application/yaml' }), 422, 'PROGRAM_INVALID');

      const before = await post('/v1/events?wait=true', purchase('prog-1', 'prog-1', 10_000));
      expect(before.json.outcomes).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'balance', pendingDelta: 100 })]));

      const activated = await call('POST', '/v1/program/activate', { token: 'admin', raw: DOUBLE_RATE, contentType: 'application/yaml' });
      expect(activated.status, activated.text).toBe(200);
      expect(activated.json).toMatchObject({ activated: true, program: { id: 'retail' }, since: expect.any(String) });
      expect((await get('/v1/program')).json).toMatchObject({ program: { earn: { points: 2 } }, source: 'api' });
      // The next purchase earns at the new rate, with no restart: 100 euros → 200 points.
      const after = await post('/v1/events?wait=true', purchase('prog-2', 'prog-1', 10_000, '2026-10-06T10:00:00Z'));
      expect(after.json.outcomes).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'balance', pendingDelta: 200, pending: 300 })]));

      const refused = await call('POST', '/v1/program/activate', { token: 'admin', raw: BAD, contentType: 'application/yaml' });
      expectError(refused, 422, 'PROGRAM_INVALID');
      expect(refused.json.error.details.errors.length).toBe(7);
      expect((await get('/v1/program')).json).toMatchObject({ program: { id: 'retail', earn: { points: 2 } }, source: 'api' });
      const still = await post('/v1/events?wait=true', purchase('prog-3', 'prog-1', 10_000, '2026-10-07T10:00:00Z'));
      expect(still.json.outcomes).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'balance', pendingDelta: 200 })]));

      // Back to the file's program.
      expect((await call('POST', '/v1/program/activate', { token: 'admin', raw: RETAIL, contentType: 'application/yaml' })).status).toBe(200);
      expect((await get('/v1/program')).json.program.earn.points).toBe(1);
    });

    // Once a bug, now fixed: zod 4 skips an object's refinements when a field has a type error, so a file with
    // one type slip was reported without its cross-field errors. The program's refinement now always runs.
    it('validate names cross-field errors together with a type error', async () => {
      const program = [
        'id: cross',
        'name: Cross',
        'membership: { autoEnroll: maybe }', // a type error
        'currency: EUR',
        'earn: { points: 1, perAmountMinor: 100, rounding: floor }',
        'tiers:',
        '  - { id: member, name: Member, qualifyingPointsMin: 5 }', // cross-field: the first tier must start at 0
        'promotions:',
        '  - { id: p1, name: P, startsAt: "2026-01-01T00:00:00Z", endsAt: "2027-01-01T00:00:00Z", eligibility: { tiers: [platinum] }, award: { kind: bonus, points: 5 } }',
        '',
      ].join('\n');
      const reply = await call('POST', '/v1/program/validate', { token: 'write', raw: program, contentType: 'application/yaml' });
      expectError(reply, 422, 'PROGRAM_INVALID');
      const fields = (reply.json.error.details.errors as string[]).map((error) => error.slice(0, error.indexOf(':')));
      expect(fields).toEqual(expect.arrayContaining(['membership.autoEnroll', 'tiers.0.qualifyingPointsMin', 'promotions.0.eligibility.tiers.0']));
    });
  });
});
