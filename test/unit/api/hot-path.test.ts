import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadApiTokens, PRINCIPAL_CACHE_MAX, TokenTable } from '../../../src/api/auth.js';
import { validationError } from '../../../src/api/errors.js';
import { buildHttpServer } from '../../../src/api/http.js';
import { fastCheckOf, isEmptyObject, isMemberParams, memberParams, serializerOf } from '../../../src/api/schema.js';
import { acceptedResponseSchema, waitQuerySchema } from '../../../src/api/submission.js';
import { walletJson, walletResponse, walletResponseSchema } from '../../../src/api/views.js';
import { walletView } from '../../../src/domain/wallet.js';
import { auth, fakeContext, FakeEngine, purchase, TOKENS } from './fake-context.js';

/**
 * What the request path skips per request, and why it is safe: a remembered
 * principal per Authorization header, a regular expression before zod for
 * path parameters, and fast-json-stringify for the wallet and the 202 body.
 */

const T = (suffix: string) => `token-${suffix}-0123456789abcdef`;

describe('principal cache', () => {
  it('remembers a known token by its header, and gives the same principal as hashing it', () => {
    const table = loadApiTokens({ apiTokens: `write:${T('w')}:alice,read:${T('r')}` });
    const first = table.identifyHeader(`Bearer ${T('w')}`);
    expect(first).toEqual({ kind: 'known', principal: { role: 'write', name: 'alice' } });
    expect(table.rememberedHeaders).toBe(1);
    expect(table.identifyHeader(`Bearer ${T('w')}`)).toBe(first);
    expect(table.rememberedHeaders).toBe(1);
    // Another spelling of the same header is another key, with the same answer.
    expect(table.identifyHeader(`bearer  ${T('w')} `)).toEqual(first);
    expect(table.identifyHeader(`Bearer ${T('r')}`)).toMatchObject({ kind: 'known', principal: { role: 'read' } });
    expect(table.rememberedHeaders).toBe(3);
  });

  it('never remembers, and never lets through, an unknown or malformed token, however often it comes', () => {
    const table = loadApiTokens({ apiTokens: `admin:${T('a')}:root` });
    expect(table.identifyHeader(`Bearer ${T('a')}`)).toMatchObject({ kind: 'known' });
    for (let attempt = 0; attempt < 3; attempt++) {
      for (const header of [`Bearer ${T('a')}x`, `Bearer ${T('a').slice(0, -1)}`, `Bearer ${T('A')}`, `Bearer ${T('b')}`, `Bearer ${T('a').toUpperCase()}`]) {
        expect(table.identifyHeader(header), header).toEqual({ kind: 'unknown' });
      }
      for (const header of [undefined, '', 'Bearer', `Basic ${T('a')}`, `Bearer ${T('a')} extra`, `${T('a')}`]) {
        expect(table.identifyHeader(header), String(header)).toEqual({ kind: 'missing' });
      }
    }
    expect(table.rememberedHeaders).toBe(1);
  });

  it('is the table\'s own: a header remembered by one table means nothing to another (a restart with other tokens)', () => {
    const before = loadApiTokens({ apiTokens: `admin:${T('a')}:root,read:${T('r')}` });
    expect(before.identifyHeader(`Bearer ${T('a')}`)).toMatchObject({ kind: 'known', principal: { role: 'admin' } });
    const after = loadApiTokens({ apiTokens: `read:${T('r')}` }); // T('a') revoked
    expect(after.identifyHeader(`Bearer ${T('a')}`)).toEqual({ kind: 'unknown' });
    // Handed to another thread as hashes, a table identifies the same tokens and remembers nothing of the first.
    const thread = TokenTable.fromData(structuredClone(before.toData()));
    expect(thread.rememberedHeaders).toBe(0);
    expect(thread.identifyHeader(`Bearer ${T('a')}`)).toMatchObject({ kind: 'known', principal: { role: 'admin', name: 'root' } });
    expect(thread.identifyHeader(`Bearer ${T('x')}`)).toEqual({ kind: 'unknown' });
    expect(JSON.stringify(before.toData())).not.toContain(T('a'));
  });

  it('is bounded: the oldest header goes first, and every header is still identified', () => {
    const table = loadApiTokens({ apiTokens: `read:${T('r')}` });
    const headers: string[] = [];
    for (let spaces = 1; headers.length < PRINCIPAL_CACHE_MAX + 200; spaces++) {
      for (let trailing = 0; trailing < 4 && headers.length < PRINCIPAL_CACHE_MAX + 200; trailing++) {
        headers.push(`Bearer${' '.repeat(spaces)}${T('r')}${'\t'.repeat(trailing)}`);
      }
    }
    for (const header of headers) expect(table.identifyHeader(header).kind).toBe('known');
    expect(table.rememberedHeaders).toBe(PRINCIPAL_CACHE_MAX);
    for (const header of headers) expect(table.identifyHeader(header).kind).toBe('known');
    expect(table.rememberedHeaders).toBe(PRINCIPAL_CACHE_MAX);
  });
});

describe('path parameter check without zod', () => {
  it('accepts exactly what zod accepts, unchanged (property)', () => {
    const zodAccepts = (data: unknown) => memberParams.safeParse(data);
    const idCharacters = fc.constantFrom(...'abcXYZ019_-'.split(''), ' ', '.', '/', 'é', '%', '\u0000');
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: idCharacters, minLength: 0, maxLength: 70 }), fc.string({ maxLength: 70 })), (memberId) => {
        const params = { memberId };
        const parsed = zodAccepts(params);
        expect(isMemberParams(params)).toBe(parsed.success);
        if (parsed.success) expect(parsed.data).toEqual(params);
      }),
      { numRuns: 2_000 },
    );
    for (const odd of [{}, { memberId: 'ann', other: 'x' }, { memberId: 7 }, null, 'ann', { memberId: 'a'.repeat(64) }, { memberId: 'a'.repeat(65) }]) {
      expect(isMemberParams(odd), JSON.stringify(odd)).toBe(zodAccepts(odd).success);
    }
    expect(fastCheckOf(memberParams)).toBe(isMemberParams);
  });

  it('lets only an empty querystring skip zod for waits', () => {
    expect(fastCheckOf(waitQuerySchema)).toBe(isEmptyObject);
    expect(isEmptyObject({})).toBe(true);
    expect(isEmptyObject(Object.create(null))).toBe(true);
    expect(waitQuerySchema.parse({})).toEqual({});
    for (const query of [{ wait: 'true' }, { timeoutMs: '5' }, { bogus: '1' }, null, 'x']) expect(isEmptyObject(query)).toBe(false);
  });
});

describe('response serializers', () => {
  it('serialise the wallet exactly as JSON.stringify does, for many members', () => {
    const engine = new FakeEngine('retail');
    const day = Date.parse('2026-11-01T10:00:00Z');
    for (let index = 0; index < 40; index++) {
      const memberId = `m${index}`;
      for (let order = 0; order <= index % 5; order++) {
        engine.apply(purchase(memberId, `p${order}`, 1_000 + index * 7_919 + order * 30_011, new Date(day + (index * 5 + order) * 86_400_000).toISOString()));
      }
    }
    const serialize = serializerOf(walletResponseSchema);
    for (const [memberId, state] of engine.states) {
      for (const nowMs of [day, day + 20 * 86_400_000, day + 400 * 86_400_000]) {
        const wallet = walletResponse(walletView(state, engine.program, nowMs), engine.program);
        expect(serialize(wallet), memberId).toBe(JSON.stringify(wallet));
        expect(walletJson(wallet)).toBe(JSON.stringify(wallet));
      }
    }
  });

  it('serialise the wallet with every nullable filled, and the 202 body, as JSON.stringify does', () => {
    const wallet = {
      memberId: 'm"1\\',
      status: 'active',
      asOf: '2026-11-23T10:00:00.000Z',
      tier: {
        id: 'gold',
        name: 'Gold "G"',
        since: '2026-11-20T10:00:00.000Z',
        basis: 'spend',
        measure: 123_456,
        periodEndsAt: null,
        next: null,
        keep: { threshold: 2_000, remaining: 0, by: null },
        grace: { until: '2027-01-31T23:00:00.000Z', targetTierId: 'silver' },
      },
      currencies: [
        { currency: 'miles', spendable: -5, pending: 0, qualifying: 7, debt: 5, pendingReleases: [], expiring: [], expiringByMonth: [], inactivityDeadline: '2027-11-01T00:00:00.000Z' },
      ],
      vouchers: [{ code: 'X-1', benefitId: 'b', kind: 'voucher', issuedAt: '2026-11-20T10:00:00.000Z', expiresAt: '2026-12-20T10:00:00.000Z' }],
      paidMembership: {
        planId: 'plus',
        name: 'Plus "P"',
        status: 'lapsed',
        since: '2025-11-20T10:00:00.000Z',
        termEndsAt: '2026-11-20T10:00:00.000Z',
        graceEndsAt: '2026-11-27T10:00:00.000Z',
        endedAt: '2026-11-27T10:00:00.000Z',
      },
      badges: [{ id: 'first', name: 'First', earnedAt: '2026-11-20T10:00:00.000Z', progress: 1, target: 1 }],
    };
    expect(serializerOf(walletResponseSchema)(wallet)).toBe(JSON.stringify(wallet));
    const accepted = { eventId: 'e-"1"', sequence: 81_234, duplicate: true, accepted: true };
    expect(serializerOf(acceptedResponseSchema)(accepted)).toBe(JSON.stringify(accepted));
    // Schemas not marked for fast-json-stringify keep JSON.stringify (every property, whatever the schema says).
    expect(serializerOf(undefined)({ a: 1, extra: [2] })).toBe('{"a":1,"extra":[2]}');
  });
});

describe('the request path end to end', () => {
  let engine: FakeEngine;
  let app: FastifyInstance;

  beforeEach(async () => {
    engine = new FakeEngine();
    engine.apply(purchase('ann', 'p1', 12_345, '2026-11-01T10:00:00Z'));
    app = await buildHttpServer({ host: '127.0.0.1', port: 0, registry: new Registry(), health: () => ({ ok: true, detail: {} }), api: fakeContext(engine) });
  });

  afterEach(async () => {
    await app.close();
  });

  it('refuses a bad member id with zod\'s VALIDATION_FAILED, field by field, on every member route', async () => {
    for (const bad of ['bad id', 'a'.repeat(65), 'a.b', 'é', '%00']) {
      const expected = validationError('params', memberParams.safeParse({ memberId: decodeURIComponent(encodeURIComponent(bad)) }).error!.issues);
      for (const [method, path, headers] of [
        ['GET', 'wallet', auth('read')],
        ['GET', 'ledger', auth('read')],
        ['POST', 'adjustments', auth('write')],
      ] as const) {
        const response = await app.inject({ method, url: `/v1/members/${encodeURIComponent(bad)}/${path}`, headers, ...(method === 'POST' ? { payload: { direction: 'credit', points: 1, reason: 'x' } } : {}) });
        expect(response.statusCode, `${bad} ${path}`).toBe(400);
        expect(response.json(), `${bad} ${path}`).toEqual({ error: { code: 'VALIDATION_FAILED', message: expected.message, details: expected.details } });
      }
    }
    expect(engine.submitted).toHaveLength(0);
  });

  it('answers a remembered token and a first-seen one alike, and an unknown one with 401 every time', async () => {
    const read = { authorization: `Bearer ${TOKENS.read}` };
    for (let attempt = 0; attempt < 3; attempt++) {
      const wallet = await app.inject({ method: 'GET', url: '/v1/members/ann/wallet', headers: read });
      expect(wallet.statusCode).toBe(200);
      expect(wallet.headers['cache-control']).toBe('no-store');
      expect(wallet.headers['x-content-type-options']).toBe('nosniff');
      expect(wallet.body).toBe(JSON.stringify(wallet.json()));
      const unknown = await app.inject({ method: 'GET', url: '/v1/members/ann/wallet', headers: { authorization: `Bearer ${TOKENS.read}x` } });
      expect(unknown.statusCode).toBe(401);
      expect(unknown.headers['cache-control']).toBe('no-store');
      // A remembered read token still cannot write.
      const write = await app.inject({ method: 'POST', url: '/v1/events', headers: read, payload: purchase('ann', `x${attempt}`, 100) });
      expect(write.statusCode).toBe(403);
    }
  });

  it('answers a submission with exactly the 202 body, and a wait with its outcomes', async () => {
    const accepted = await app.inject({ method: 'POST', url: '/v1/events', headers: auth('write'), payload: purchase('ann', 'p9', 100) });
    expect(accepted.statusCode).toBe(202);
    expect(accepted.body).toBe(JSON.stringify({ eventId: 'p9', sequence: 1, duplicate: false, accepted: true }));
    const waited = await app.inject({ method: 'POST', url: '/v1/events?wait=true', headers: auth('write'), payload: purchase('ann', 'p10', 100) });
    expect(waited.statusCode).toBe(200);
    expect(waited.json()).toMatchObject({ eventId: 'p10', result: 'applied', outcomes: [expect.objectContaining({ kind: 'balance' })] });
    const badQuery = await app.inject({ method: 'POST', url: '/v1/events?wait=maybe', headers: auth('write'), payload: purchase('ann', 'p11', 100) });
    expect(badQuery.statusCode).toBe(400);
    expect(badQuery.json().error.details.issues[0].field).toBe('querystring.wait');
  });
});
