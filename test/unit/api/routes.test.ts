import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildHttpServer } from '../../../src/api/http.js';
import type { Settings } from '../../../src/config/settings.js';
import { auth, fakeContext, FakeEngine, programText, purchase, testSettings } from './fake-context.js';

async function appFor(engine: FakeEngine, settings: Settings = testSettings(), host = '127.0.0.1', bulk = {}): Promise<FastifyInstance> {
  const registry = new Registry();
  registry.setDefaultLabels({});
  return buildHttpServer({ host, port: 0, registry, health: () => ({ ok: true, detail: { consuming: true } }), api: fakeContext(engine, settings), routes: { bulk } });
}

function expectError(response: { statusCode: number; json(): unknown }, status: number, code: string) {
  expect(response.statusCode).toBe(status);
  const body = response.json() as { error: { code: string; message: string } };
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
  return body.error as { code: string; message: string; details?: any };
}

describe('HTTP API routes', () => {
  let engine: FakeEngine;
  let app: FastifyInstance;

  beforeEach(async () => {
    engine = new FakeEngine();
    engine.apply(purchase('ann', 'p1', 12_345, '2026-11-01T10:00:00Z'));
    engine.apply(purchase('ann', 'p2', 1_000, '2026-11-02T10:00:00Z'));
    engine.apply(purchase('ann', 'p3', 2_000, '2026-11-03T10:00:00Z'));
    engine.apply({ id: 'a1', memberId: 'ann', type: 'adjustment', occurredAt: '2026-11-04T10:00:00Z', direction: 'credit', points: 5, currency: 'points', reason: 'r', operator: 'o' });
    engine.apply(purchase('ann', 'p4', 3_000, '2026-11-05T10:00:00Z'));
    app = await appFor(engine);
  });

  afterEach(async () => {
    await app.close();
  });

  describe('authentication and roles', () => {
    it('401 without or with an unknown token (WWW-Authenticate), 403 when the role is too low', async () => {
      const missing = await app.inject({ method: 'GET', url: '/v1/members/ann/wallet' });
      expectError(missing, 401, 'UNAUTHORIZED');
      expect(missing.headers['www-authenticate']).toBe('Bearer realm="loyalty"');
      const unknown = await app.inject({ method: 'GET', url: '/v1/members/ann/wallet', headers: { authorization: 'Bearer wrong-token-0123456789abcdef' } });
      expectError(unknown, 401, 'UNAUTHORIZED');
      expect(unknown.headers['www-authenticate']).toMatch(/invalid_token/);
      const basic = await app.inject({ method: 'GET', url: '/v1/members/ann/wallet', headers: { authorization: 'Basic abc' } });
      expectError(basic, 401, 'UNAUTHORIZED');

      const readWrites = await app.inject({ method: 'POST', url: '/v1/members/ann/adjustments', headers: auth('read'), payload: { direction: 'credit', points: 1, reason: 'x' } });
      expect(expectError(readWrites, 403, 'FORBIDDEN').details).toEqual({ required: 'write', role: 'read' });
      expectError(await app.inject({ method: 'POST', url: '/v1/members/ann/erase', headers: auth('write') }), 403, 'FORBIDDEN');
      expectError(await app.inject({ method: 'POST', url: '/v1/program/activate', headers: auth('write'), payload: 'x' }), 403, 'FORBIDDEN');
      expect(engine.submitted).toHaveLength(0);
    });

    it('checks the token before reading the body, and for unknown routes too', async () => {
      expectError(await app.inject({ method: 'POST', url: '/v1/events', payload: '{bad json' , headers: { 'content-type': 'application/json' } }), 401, 'UNAUTHORIZED');
      expectError(await app.inject({ method: 'GET', url: '/v1/secret' }), 401, 'UNAUTHORIZED');
      expectError(await app.inject({ method: 'GET', url: '/v1/secret', headers: auth('read') }), 404, 'NOT_FOUND');
    });

    it('serves /health without a token, /metrics and /openapi.json with read', async () => {
      const health = await app.inject({ method: 'GET', url: '/health' });
      expect(health.statusCode).toBe(200);
      expect(health.json()).toEqual({ status: 'ok', consuming: true });
      expectError(await app.inject({ method: 'GET', url: '/metrics' }), 401, 'UNAUTHORIZED');
      expect((await app.inject({ method: 'GET', url: '/metrics', headers: auth('read') })).statusCode).toBe(200);
      const doc = await app.inject({ method: 'GET', url: '/openapi.json', headers: auth('read') });
      expect(doc.statusCode).toBe(200);
      const openapi = doc.json();
      expect(openapi.openapi).toBe('3.0.3');
      expect(openapi.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
      expect(Object.keys(openapi.paths)).toEqual(
        expect.arrayContaining(['/v1/members/{memberId}/wallet', '/v1/members/{memberId}/ledger', '/v1/events', '/v1/bulk/adjustments', '/v1/program/activate', '/v1/reports/kpis']),
      );
      expect(openapi.paths['/health'].get.security).toEqual([]);
      const adjustment = openapi.paths['/v1/members/{memberId}/adjustments'].post;
      expect(adjustment.requestBody.content['application/json'].schema.required).toEqual(['direction', 'points', 'reason']);
      expect(adjustment.parameters.map((parameter: { name: string }) => parameter.name)).toEqual(expect.arrayContaining(['memberId', 'wait', 'timeoutMs', 'idempotency-key']));
    });

    it('without tokens: no writes at all; reads only on a loopback server', async () => {
      const open = await appFor(engine, testSettings({ apiTokens: '' }));
      try {
        expect((await open.inject({ method: 'GET', url: '/v1/members/ann/wallet' })).statusCode).toBe(200);
        expectError(await open.inject({ method: 'POST', url: '/v1/members/ann/adjustments', payload: { direction: 'credit', points: 1, reason: 'x' } }), 403, 'NO_TOKENS_CONFIGURED');
      } finally {
        await open.close();
      }
      const exposed = await appFor(engine, testSettings({ apiTokens: '' }), '0.0.0.0');
      try {
        expectError(await exposed.inject({ method: 'GET', url: '/v1/members/ann/wallet' }), 403, 'NO_TOKENS_CONFIGURED');
        expect((await exposed.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
      } finally {
        await exposed.close();
      }
    });
  });

  describe('members', () => {
    it('shows the wallet, 404 MEMBER_NOT_FOUND for an unknown member, 400 for a bad id', async () => {
      const wallet = await app.inject({ method: 'GET', url: '/v1/members/ann/wallet', headers: auth('read') });
      expect(wallet.statusCode).toBe(200);
      expect(wallet.json()).toMatchObject({
        memberId: 'ann',
        status: 'active',
        tier: { id: 'member', next: { id: 'silver', threshold: 500 }, keep: { threshold: 0 } },
        currencies: [{ currency: 'points', spendable: 123 + 10 + 20 + 5 + 30, pendingReleases: [], expiringByMonth: expect.any(Array) }],
        vouchers: [],
      });
      expectError(await app.inject({ method: 'GET', url: '/v1/members/nobody/wallet', headers: auth('read') }), 404, 'MEMBER_NOT_FOUND');
      const bad = expectError(await app.inject({ method: 'GET', url: '/v1/members/bad%20id/wallet', headers: auth('read') }), 400, 'VALIDATION_FAILED');
      expect(bad.details.issues[0].field).toBe('params.memberId');
    });

    it('pages through the ledger with an opaque cursor, filtered by kind and time', async () => {
      const seen: number[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const response: any = await app.inject({ method: 'GET', url: `/v1/members/ann/ledger?limit=2${cursor ? `&cursor=${cursor}` : ''}`, headers: auth('read') });
        expect(response.statusCode).toBe(200);
        const body = response.json();
        expect(body.entries.length).toBeLessThanOrEqual(2);
        seen.push(...body.entries.map((entry: { seq: number }) => entry.seq));
        cursor = body.nextCursor;
        pages += 1;
      } while (cursor !== null && pages < 20);
      const all = engine.ledgers.get('ann')!.map((entry) => entry.seq);
      expect(seen).toEqual(all);
      expect(pages).toBe(Math.ceil(all.length / 2));

      const adjustments = (await app.inject({ method: 'GET', url: '/v1/members/ann/ledger?kind=adjustment', headers: auth('read') })).json();
      expect(adjustments.entries.map((entry: { kind: string }) => entry.kind)).toEqual(['adjustment']);
      expect(adjustments.entries[0]).toMatchObject({ eventId: 'a1', points: 5, occurredAt: '2026-11-04T10:00:00.000Z' });
      const ranged = (await app.inject({ method: 'GET', url: '/v1/members/ann/ledger?from=2026-11-02&to=2026-11-04T00:00:00Z&kind=earn,adjustment', headers: auth('read') })).json();
      expect([...new Set(ranged.entries.map((entry: { eventId: string }) => entry.eventId))]).toEqual(['p2', 'p3']);
      const repeated = (await app.inject({ method: 'GET', url: '/v1/members/ann/ledger?kind=earn&kind=adjustment', headers: auth('read') })).json();
      expect(repeated.entries).toHaveLength(all.length);
    });

    it('refuses bad ledger queries naming every bad field', async () => {
      const error = expectError(
        await app.inject({ method: 'GET', url: '/v1/members/ann/ledger?limit=501&kind=earn,bogus&from=yesterday&extra=1', headers: auth('read') }),
        400,
        'VALIDATION_FAILED',
      );
      const fields = error.details.issues.map((issue: { field: string }) => issue.field);
      expect(fields).toEqual(expect.arrayContaining(['querystring.limit', 'querystring.kind.1', 'querystring.from', 'querystring']));
      // Every message says what was expected, none only "Invalid input".
      const from = error.details.issues.find((issue: { field: string }) => issue.field === 'querystring.from');
      expect(from.message).toMatch(/expected an ISO 8601 date-time with offset .* or a date/);
      for (const issue of error.details.issues as { message: string }[]) expect(issue.message).not.toBe('Invalid input');
      const report = expectError(await app.inject({ method: 'GET', url: '/v1/reports/kpis?from=notadate', headers: auth('read') }), 400, 'VALIDATION_FAILED');
      expect(report.message).toMatch(/^querystring\.from: expected an ISO 8601 date-time/);
      expectError(await app.inject({ method: 'GET', url: '/v1/members/ann/ledger?cursor=forged', headers: auth('read') }), 400, 'VALIDATION_FAILED');
      expectError(await app.inject({ method: 'GET', url: '/v1/members/ann/ledger?limit=0', headers: auth('read') }), 400, 'VALIDATION_FAILED');
      expectError(await app.inject({ method: 'GET', url: '/v1/members/ann/ledger?from=2026-11-05&to=2026-11-01', headers: auth('read') }), 400, 'VALIDATION_FAILED');
    });
  });

  describe('events', () => {
    const adjustment = { id: 'e-1', memberId: 'ann', type: 'adjustment', occurredAt: '2026-11-10T10:00:00Z', direction: 'credit', points: 10, currency: 'points', reason: 'goodwill' };

    it('accepts an event (202), fills the operator from the token, waits for the outcome (200)', async () => {
      const accepted = await app.inject({ method: 'POST', url: '/v1/events', headers: auth('write'), payload: adjustment });
      expect(accepted.statusCode).toBe(202);
      expect(accepted.json()).toEqual({ eventId: 'e-1', sequence: 1, duplicate: false, accepted: true });
      expect(engine.submitted[0]).toMatchObject({ id: 'e-1', operator: 'alice' });

      const waited = await app.inject({ method: 'POST', url: '/v1/events?wait=true&timeoutMs=1000', headers: auth('write'), payload: { ...adjustment, id: 'e-2' } });
      expect(waited.statusCode).toBe(200);
      expect(waited.json()).toMatchObject({ eventId: 'e-2', result: 'applied', outcomes: [expect.objectContaining({ kind: 'balance', delta: 10 })] });

      const rejected = await app.inject({ method: 'POST', url: '/v1/events?wait=true', headers: auth('write'), payload: { ...adjustment, id: 'e-3', direction: 'debit', points: 1_000_000 } });
      expect(rejected.json()).toMatchObject({ result: 'rejected', rejection: { code: expect.any(String), reason: expect.any(String) } });
    });

    it('names every bad field of an invalid event', async () => {
      const error = expectError(
        await app.inject({ method: 'POST', url: '/v1/events', headers: auth('write'), payload: { ...adjustment, points: -1, currency: 'EUR!', memberId: 'a b' } }),
        400,
        'VALIDATION_FAILED',
      );
      expect(error.details.issues.map((issue: { field: string }) => issue.field).sort()).toEqual(['body.currency', 'body.memberId', 'body.points']);
      expectError(await app.inject({ method: 'POST', url: '/v1/events', headers: auth('write'), payload: [1, 2] }), 400, 'VALIDATION_FAILED');
      expectError(await app.inject({ method: 'POST', url: '/v1/events', headers: auth('write'), payload: { type: 'teleport' } }), 400, 'VALIDATION_FAILED');
      expect(engine.submitted).toHaveLength(0);
    });

    it('keeps erase and other operators for admins', async () => {
      const erase = { id: 'x-1', memberId: 'ann', type: 'erase', occurredAt: '2026-11-10T10:00:00Z' };
      expectError(await app.inject({ method: 'POST', url: '/v1/events', headers: auth('write'), payload: erase }), 403, 'FORBIDDEN');
      expect((await app.inject({ method: 'POST', url: '/v1/events', headers: auth('admin'), payload: erase })).statusCode).toBe(202);
      expectError(await app.inject({ method: 'POST', url: '/v1/events', headers: auth('write'), payload: { ...adjustment, operator: 'mallory' } }), 403, 'FORBIDDEN');
      expect((await app.inject({ method: 'POST', url: '/v1/events', headers: auth('admin'), payload: { ...adjustment, id: 'mig-1', operator: 'migration' } })).statusCode).toBe(202);
    });

    it('504 OUTCOME_TIMEOUT when the outcome does not come (accepted all the same), 503 SUBMIT_FAILED when publishing fails', async () => {
      engine.mode = 'accept';
      const timeout = expectError(await app.inject({ method: 'POST', url: '/v1/events?wait=true&timeoutMs=50', headers: auth('write'), payload: adjustment }), 504, 'OUTCOME_TIMEOUT');
      expect(timeout.message).toMatch(/accepted \(stream sequence 1\)/);
      expect(timeout.details).toEqual({ eventId: 'e-1', sequence: 1, duplicate: false, accepted: true });
      engine.mode = 'fail';
      const failed = expectError(await app.inject({ method: 'POST', url: '/v1/events', headers: auth('write'), payload: adjustment }), 503, 'SUBMIT_FAILED');
      expect(failed.message).toMatch(/re-send it with the same id/);
      expectError(await app.inject({ method: 'POST', url: '/v1/events?wait=maybe&timeoutMs=40000', headers: auth('write'), payload: adjustment }), 400, 'VALIDATION_FAILED');
    });
  });

  describe('operator endpoints', () => {
    it('builds each event, with Idempotency-Key as the event id', async () => {
      const post = (url: string, payload?: unknown, role: 'write' | 'admin' = 'write', key?: string) =>
        app.inject({ method: 'POST', url, headers: { ...auth(role), ...(key ? { 'idempotency-key': key } : {}) }, ...(payload !== undefined ? { payload: payload as object } : {}) });
      expect((await post('/v1/members/ann/adjustments', { direction: 'debit', points: 3, reason: 'fix', qualifying: false }, 'write', 'adj-key-1')).statusCode).toBe(202);
      expect((await post('/v1/members/ann/redemptions', { rewardId: 'mug', points: 50 }, 'write', 'red-1')).statusCode).toBe(202);
      expect((await post('/v1/members/ann/redemptions/red-1/cancel')).statusCode).toBe(202);
      expect((await post('/v1/members/ann/vouchers/V-123/redeem', {})).statusCode).toBe(202);
      expect((await post('/v1/members/newbie/enroll', { attributes: { country: 'DE' }, segments: ['vip'] })).statusCode).toBe(202);
      expect((await post('/v1/members/ann/unenroll')).statusCode).toBe(202);
      expect((await post('/v1/members/ann/erase', undefined, 'admin')).statusCode).toBe(202);
      expect(engine.submitted.map((event) => event.type)).toEqual(['adjustment', 'redemption', 'redemption_cancel', 'voucher_redeem', 'enroll', 'unenroll', 'erase']);
      expect(engine.submitted[0]).toMatchObject({ id: 'adj-key-1', memberId: 'ann', direction: 'debit', points: 3, currency: 'points', reason: 'fix', operator: 'alice', qualifying: false });
      expect(engine.submitted[1]).toMatchObject({ id: 'red-1', rewardId: 'mug', points: 50, currency: 'points' });
      expect(engine.submitted[2]).toMatchObject({ type: 'redemption_cancel', redemptionId: 'red-1', id: expect.stringMatching(/^cancel-/) });
      expect(engine.submitted[3]).toMatchObject({ code: 'V-123' });
      expect(engine.submitted[4]).toMatchObject({ memberId: 'newbie', attributes: { country: 'DE' }, segments: ['vip'] });
      for (const event of engine.submitted) expect(Date.parse(event.occurredAt)).toBeGreaterThan(Date.now() - 60_000);
    });

    it('retrying with the same Idempotency-Key changes nothing and returns the first outcome', async () => {
      const request = () =>
        app.inject({ method: 'POST', url: '/v1/members/ann/adjustments?wait=true', headers: { ...auth('write'), 'idempotency-key': 'once' }, payload: { direction: 'credit', points: 7, reason: 'x' } });
      const first = (await request()).json();
      const second = (await request()).json();
      expect(second).toMatchObject({ eventId: 'once', duplicate: true, outcomes: first.outcomes });
      expect(engine.states.get('ann')!.currencies.points!.spendable).toBe(188 + 7);
    });

    it('refuses unknown members, unknown currencies, bad keys and bad bodies, naming each field', async () => {
      expectError(await app.inject({ method: 'POST', url: '/v1/members/ghost/adjustments', headers: auth('write'), payload: { direction: 'credit', points: 1, reason: 'x' } }), 404, 'MEMBER_NOT_FOUND');
      const currency = expectError(
        await app.inject({ method: 'POST', url: '/v1/members/ann/adjustments', headers: auth('write'), payload: { direction: 'credit', points: 1, reason: 'x', currency: 'miles' } }),
        400,
        'VALIDATION_FAILED',
      );
      expect(currency.message).toMatch(/unknown currency "miles"; the program has points/);
      expectError(
        await app.inject({ method: 'POST', url: '/v1/members/ann/adjustments', headers: { ...auth('write'), 'idempotency-key': 'has space' }, payload: { direction: 'credit', points: 1, reason: 'x' } }),
        400,
        'VALIDATION_FAILED',
      );
      const body = expectError(
        await app.inject({ method: 'POST', url: '/v1/members/ann/adjustments', headers: auth('write'), payload: { direction: 'sideways', points: 1.5, reason: '', extra: true } }),
        400,
        'VALIDATION_FAILED',
      );
      expect(body.details.issues.map((issue: { field: string }) => issue.field).sort()).toEqual(['body', 'body.direction', 'body.points', 'body.reason']);
      expectError(await app.inject({ method: 'POST', url: '/v1/members/ann/unenroll', headers: auth('write'), payload: { surprise: 1 } }), 400, 'VALIDATION_FAILED');
      expect(engine.submitted).toHaveLength(0);
    });
  });

  describe('content types', () => {
    it('answers 415, before reading the body, to a JSON route sent text/plain, CSV or YAML, naming what it takes', async () => {
      for (const type of ['text/plain', 'text/csv', 'application/yaml', 'text/plain; charset=utf-8']) {
        const error = expectError(
          await app.inject({ method: 'POST', url: '/v1/events', headers: { ...auth('write'), 'content-type': type }, payload: '{"id":"e1"}' }),
          415,
          'UNSUPPORTED_MEDIA_TYPE',
        );
        expect(error.message).toContain('application/json');
      }
      expectError(
        await app.inject({ method: 'POST', url: '/v1/members/ann/adjustments', headers: { ...auth('write'), 'content-type': 'text/plain' }, payload: '{}' }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      );
      expect(engine.submitted).toHaveLength(0);
    });

    it('checks the token before the content type, and lets each route take what its schema names', async () => {
      expectError(await app.inject({ method: 'POST', url: '/v1/events', headers: { 'content-type': 'text/plain' }, payload: 'x' }), 401, 'UNAUTHORIZED');
      const program = expectError(
        await app.inject({ method: 'POST', url: '/v1/program/validate', headers: { ...auth('write'), 'content-type': 'text/csv' }, payload: 'a,b' }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      );
      expect(program.message).toContain('application/yaml');
      const yaml = await app.inject({ method: 'POST', url: '/v1/program/validate', headers: { ...auth('write'), 'content-type': 'application/yaml' }, payload: programText() });
      expect(yaml.statusCode).toBe(200);
      const json = await app.inject({ method: 'POST', url: '/v1/events', headers: { ...auth('write'), 'content-type': 'application/json; charset=utf-8' }, payload: '{}' });
      expect(json.statusCode).toBe(400); // through to validation
    });
  });

  describe('errors from fastify itself', () => {
    it('maps bad JSON, unsupported media types and too large bodies to the JSON error shape', async () => {
      expectError(await app.inject({ method: 'POST', url: '/v1/events', headers: { ...auth('write'), 'content-type': 'application/json' }, payload: '{"id":' }), 400, 'INVALID_JSON');
      expectError(await app.inject({ method: 'POST', url: '/v1/events', headers: { ...auth('write'), 'content-type': 'application/xml' }, payload: '<a/>' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
      const small = await appFor(engine, testSettings({ payloadBytesMax: 256 }));
      try {
        const large = await small.inject({ method: 'POST', url: '/v1/events', headers: auth('write'), payload: { id: 'x'.repeat(300) } });
        expectError(large, 413, 'PAYLOAD_TOO_LARGE');
      } finally {
        await small.close();
      }
    });
  });

  describe('bulk adjustments', () => {
    async function waitDone(target: FastifyInstance, jobId: string) {
      for (let attempt = 0; attempt < 200; attempt++) {
        const status = (await target.inject({ method: 'GET', url: `/v1/bulk/${jobId}`, headers: auth('read') })).json();
        if (status.state !== 'running' && status.state !== 'awaiting_outcomes') return status;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error('job did not finish');
    }

    it('runs a CSV with good and bad lines and reports every line', async () => {
      engine.apply(purchase('bob', 'pb', 100));
      const file = [
        'memberId,direction,points,currency,reason,id',
        'ann,credit,10,points,campaign,c-1',
        '',
        'bob,debit,1,,"fix, typo",c-2',
        'ann,credit,ten,points,campaign,c-3',
        'ghost,credit,1,points,campaign,c-4',
        'ann,credit,1,miles,campaign,c-5',
        'ann,credit,1,points,campaign,c-1',
        'ann,credit,1,points',
        'ann,"credit,1,points,campaign,c-9',
        'bob,debit,5000,points,too much,c-10',
        'ann,credit,2,points,no id,',
      ].join('\r\n');
      const upload = await app.inject({ method: 'POST', url: '/v1/bulk/adjustments', headers: { ...auth('write'), 'content-type': 'text/csv' }, payload: file });
      expect(upload.statusCode).toBe(202);
      expect(upload.headers.location).toBe(`/v1/bulk/${upload.json().jobId}`);
      const status = await waitDone(app, upload.json().jobId);
      expect(status).toMatchObject({ state: 'completed', format: 'csv', operator: 'alice', outcomesTracked: true });
      expect(status.counts).toEqual({ total: 10, invalid: 6, queued: 0, submitted: 4, applied: 3, rejected: 1, pending: 0, failed: 0, duplicates: 0 });

      const report = await app.inject({ method: 'GET', url: `/v1/bulk/${status.jobId}/report`, headers: auth('read') });
      expect(report.headers['content-type']).toMatch(/application\/x-ndjson/);
      const lines = report.body.trim().split('\n').map((line) => JSON.parse(line));
      expect(lines.map((line) => [line.line, line.status])).toEqual([
        [2, 'applied'],
        [4, 'applied'],
        [5, 'invalid'],
        [6, 'invalid'],
        [7, 'invalid'],
        [8, 'invalid'],
        [9, 'invalid'],
        [10, 'invalid'],
        [11, 'rejected'],
        [12, 'applied'],
      ]);
      const byLine = new Map(lines.map((line) => [line.line, line]));
      expect(byLine.get(5).reason).toMatch(/^points: /);
      expect(byLine.get(6).reason).toMatch(/member ghost is not known/);
      expect(byLine.get(7).reason).toMatch(/unknown currency "miles"/);
      expect(byLine.get(8).reason).toMatch(/already on line 2/);
      expect(byLine.get(9).reason).toMatch(/expected 6 fields/);
      expect(byLine.get(10).reason).toMatch(/not closed/);
      expect(byLine.get(11)).toMatchObject({ id: 'c-10', status: 'rejected', sequence: expect.any(Number) });
      expect(byLine.get(12)).toMatchObject({ id: `bulk:${status.jobId}:12`, status: 'applied' });
      expect(engine.submitted.find((event) => event.id === 'c-2')).toMatchObject({ reason: 'fix, typo', currency: 'points', operator: 'alice' });

      const csv = await app.inject({ method: 'GET', url: `/v1/bulk/${status.jobId}/report?status=invalid`, headers: { ...auth('read'), accept: 'text/csv' } });
      expect(csv.headers['content-type']).toMatch(/text\/csv/);
      const rows = csv.body.trim().split('\n');
      expect(rows[0]).toBe('line,id,memberId,status,reason,sequence,duplicate');
      expect(rows).toHaveLength(1 + 6);
    });

    it('runs NDJSON, reuses a job for the same Idempotency-Key, 404 for unknown jobs', async () => {
      const file = `${JSON.stringify({ memberId: 'ann', direction: 'credit', points: 3, reason: 'n', id: 'n-1' })}\n{"memberId": "ann"\n${JSON.stringify({ memberId: 'ann', direction: 'credit', points: '4', reason: 'n', qualifying: true })}\n[1]\n`;
      const headers = { ...auth('write'), 'content-type': 'application/x-ndjson', 'idempotency-key': 'nightly-2026-11-23' };
      const upload = await app.inject({ method: 'POST', url: '/v1/bulk/adjustments', headers, payload: file });
      expect(upload.statusCode).toBe(202);
      expect(upload.json().jobId).toBe('nightly-2026-11-23');
      const status = await waitDone(app, 'nightly-2026-11-23');
      expect(status.counts).toMatchObject({ total: 4, invalid: 2, applied: 2 });
      const again = await app.inject({ method: 'POST', url: '/v1/bulk/adjustments', headers, payload: file });
      expect(again.statusCode).toBe(200);
      expect(engine.submitted).toHaveLength(2);
      expect(engine.submitted[1]).toMatchObject({ id: 'bulk:nightly-2026-11-23:3', points: 4, qualifying: true });
      expectError(await app.inject({ method: 'GET', url: '/v1/bulk/nope', headers: auth('read') }), 404, 'NOT_FOUND');
      expectError(await app.inject({ method: 'GET', url: '/v1/bulk/nope/report', headers: auth('read') }), 404, 'NOT_FOUND');
    });

    it('refuses bad headers, too many lines, wrong media types and empty files up front', async () => {
      const csv = { ...auth('write'), 'content-type': 'text/csv' };
      const header = expectError(await app.inject({ method: 'POST', url: '/v1/bulk/adjustments', headers: csv, payload: 'member,direction,points,points\nann,credit,1,1' }), 400, 'VALIDATION_FAILED');
      expect(header.message).toMatch(/unknown column "member"/);
      expect(header.message).toMatch(/column "points" appears twice/);
      expect(header.message).toMatch(/missing column "memberId"/);
      expect(header.message).toMatch(/missing column "reason"/);
      expectError(await app.inject({ method: 'POST', url: '/v1/bulk/adjustments', headers: csv, payload: '  \n' }), 400, 'VALIDATION_FAILED');
      expectError(await app.inject({ method: 'POST', url: '/v1/bulk/adjustments', headers: auth('write'), payload: { memberId: 'ann' } }), 415, 'UNSUPPORTED_MEDIA_TYPE');
      const small = await appFor(engine, testSettings(), '127.0.0.1', { linesMax: 3 });
      try {
        const file = 'memberId,direction,points,reason\nann,credit,1,r\nann,credit,1,r\nann,credit,1,r\nann,credit,1,r\n';
        expectError(await small.inject({ method: 'POST', url: '/v1/bulk/adjustments', headers: csv, payload: file }), 413, 'TOO_MANY_LINES');
        const plain = await small.inject({ method: 'POST', url: '/v1/bulk/adjustments?format=csv', headers: { ...auth('write'), 'content-type': 'text/plain' }, payload: 'memberId,direction,points,reason\nann,credit,1,r\n' });
        expect(plain.statusCode).toBe(202);
      } finally {
        await small.close();
      }
      const tiny = await appFor(engine, testSettings({ httpBodyBytesMax: 1024 }));
      try {
        expectError(await tiny.inject({ method: 'POST', url: '/v1/bulk/adjustments', headers: csv, payload: `memberId,direction,points,reason\n${'ann,credit,1,r\n'.repeat(100)}` }), 413, 'PAYLOAD_TOO_LARGE');
      } finally {
        await tiny.close();
      }
    });
  });

  describe('program', () => {
    it('shows, validates and activates programs; 422 names every bad field', async () => {
      const current = (await app.inject({ method: 'GET', url: '/v1/program', headers: auth('read') })).json();
      expect(current).toMatchObject({ program: { id: 'simple' }, source: 'file', since: '2026-11-01T00:00:00.000Z' });

      const good = programText('retail');
      const valid = await app.inject({ method: 'POST', url: '/v1/program/validate', headers: { ...auth('write'), 'content-type': 'application/yaml' }, payload: good });
      expect(valid.statusCode).toBe(200);
      expect(valid.json()).toMatchObject({ valid: true, program: { id: expect.any(String) } });

      const broken = 'id: Bad Id\nname: ""\ncurrency: euro\nearn: { points: -1, perAmountMinor: 0, rounding: sideways }\ntiers: []\n';
      const invalid = expectError(await app.inject({ method: 'POST', url: '/v1/program/validate', headers: { ...auth('write'), 'content-type': 'text/plain' }, payload: broken }), 422, 'PROGRAM_INVALID');
      expect(invalid.details.errors.length).toBeGreaterThanOrEqual(6);
      expect(invalid.details.errors.join('\n')).toMatch(/currency/);
      expect(invalid.details.errors.join('\n')).toMatch(/earn\.rounding/);

      expectError(await app.inject({ method: 'POST', url: '/v1/program/activate', headers: { ...auth('admin'), 'content-type': 'application/yaml' }, payload: broken }), 422, 'PROGRAM_INVALID');
      expect(engine.program.id).toBe('simple');
      const activated = await app.inject({ method: 'POST', url: '/v1/program/activate', headers: { ...auth('admin'), 'content-type': 'application/yaml' }, payload: good });
      expect(activated.statusCode).toBe(200);
      expect(activated.json()).toMatchObject({ activated: true, program: { id: engine.program.id } });
      expect((await app.inject({ method: 'GET', url: '/v1/program', headers: auth('read') })).json()).toMatchObject({ source: 'api', program: { id: engine.program.id } });

      const asJson = await app.inject({ method: 'POST', url: '/v1/program/validate', headers: auth('write'), payload: JSON.parse(JSON.stringify(engine.program)) });
      expect(asJson.statusCode).toBe(200);
    });
  });

  describe('reports', () => {
    it('serves KPIs as JSON and as CSV with a header row', async () => {
      const json = await app.inject({ method: 'GET', url: '/v1/reports/kpis?period=day&from=2026-11-01&to=2026-11-03', headers: auth('read') });
      expect(json.statusCode).toBe(200);
      expect(json.json()).toMatchObject({ period: 'day', from: '2026-11-01T00:00:00.000Z', to: '2026-11-03T00:00:00.000Z', rows: [expect.objectContaining({ period: '2026-11-01' }), expect.any(Object)] });
      expect(engine.kpiCalls[0]).toEqual({ period: 'day', fromMs: Date.parse('2026-11-01T00:00:00Z'), toMs: Date.parse('2026-11-03T00:00:00Z') });

      const csv = await app.inject({ method: 'GET', url: '/v1/reports/kpis?period=week&from=2026-11-01&to=2026-12-01&format=csv', headers: auth('read') });
      expect(csv.headers['content-type']).toMatch(/text\/csv/);
      const [header, first] = csv.body.trim().split('\n');
      expect(header).toBe(
        'period,currency,pointsIssued,pointsRedeemed,pointsExpired,pointsAdjusted,pointsClawedBack,liabilityPoints,liabilityMinor,activeMembers,enrollments,redemptions,redemptionRate,breakageRate,breakageRateLifetime,liabilityNetPoints,liabilityNetMinor,tierUpgrades,tierDowngrades,tier:gold,tier:member,tier:silver,promotions',
      );
      expect(first).toBe('2026-11-01,points,100,10,0,5,0,1000,1000,3,1,1,0.1,0,0,1000,1000,1,0,1,2,0,double=40/2');
      const accept = await app.inject({ method: 'GET', url: '/v1/reports/kpis', headers: { ...auth('read'), accept: 'text/csv' } });
      expect(accept.body.startsWith('period,')).toBe(true);

      expectError(await app.inject({ method: 'GET', url: '/v1/reports/kpis?period=year', headers: auth('read') }), 400, 'VALIDATION_FAILED');
      expectError(await app.inject({ method: 'GET', url: '/v1/reports/kpis?from=2026-12-01&to=2026-11-01', headers: auth('read') }), 400, 'VALIDATION_FAILED');
      expectError(await app.inject({ method: 'GET', url: '/v1/reports/kpis?period=day&from=2020-01-01&to=2026-01-01', headers: auth('read') }), 400, 'VALIDATION_FAILED');
    });

    it('serves the program KPIs as JSON and as CSV, with the same range rules', async () => {
      const json = await app.inject({ method: 'GET', url: '/v1/reports/program?period=month&from=2026-11-01&to=2026-12-01', headers: auth('read') });
      expect(json.statusCode).toBe(200);
      expect(json.json()).toMatchObject({ period: 'month', rows: [expect.objectContaining({ period: '2026-11-01', orders: 4, averageOrderWithPointsMinor: 4_000, churnRate: 0.25 })] });
      const csv = await app.inject({ method: 'GET', url: '/v1/reports/program?period=month&from=2026-11-01&to=2026-12-01&format=csv', headers: auth('read') });
      expect(csv.headers['content-type']).toMatch(/text\/csv/);
      const [header, first] = csv.body.trim().split('\n');
      expect(header).toBe(
        'period,orders,revenueMinor,averageOrderMinor,ordersWithPoints,revenueWithPointsMinor,averageOrderWithPointsMinor,ordersWithoutPoints,revenueWithoutPointsMinor,averageOrderWithoutPointsMinor,returns,returnedMinor,returnRate,activeMembers,orderFrequency,purchasers,repeatPurchasers,repeatPurchaseRate,members,enrollments,unenrollments,lapsed,reactivated,inactiveMembers,churned,churnRate,retentionRate,paid:plus:members,paid:plus:joined,paid:plus:renewed,paid:plus:switched,paid:plus:lapsed,paid:plus:cancelled,paid:plus:feesMinor,donated:trees,badge:first-order',
      );
      expect(first).toBe(`2026-11-01,4,10000,2500,1,4000,4000,3,6000,2000,1,1000,0.25,3,${4 / 3},3,1,${1 / 3},5,2,1,0,0,0,1,0.25,0.75,2,1,1,0,0,0,9800,500,2`);
      expectError(await app.inject({ method: 'GET', url: '/v1/reports/program?from=2026-12-01&to=2026-11-01', headers: auth('read') }), 400, 'VALIDATION_FAILED');
    });
  });
});
