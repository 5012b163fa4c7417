import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listeningPort, startHttpServer } from '../../../src/api/http.js';
import { adjustCommand, ADJUST_HELP } from '../../../src/cli/commands/adjust.js';
import type { CommandIo } from '../../../src/cli/commands/client.js';
import { memberCommand } from '../../../src/cli/commands/member.js';
import { reportCommand } from '../../../src/cli/commands/report.js';
import { fakeContext, FakeEngine, purchase, TOKENS } from './fake-context.js';

/** The operator commands against a real HTTP server over the fake engine. */
describe('CLI commands', () => {
  let engine: FakeEngine;
  let app: FastifyInstance;
  let url: string;

  beforeAll(async () => {
    engine = new FakeEngine();
    engine.apply(purchase('ann', 'p1', 12_345, '2026-11-01T10:00:00Z'));
    engine.apply(purchase('bob', 'p2', 1_000, '2026-11-01T10:00:00Z'));
    app = await startHttpServer({ host: '127.0.0.1', port: 0, registry: new Registry(), health: () => ({ ok: true, detail: {} }), api: fakeContext(engine) });
    url = `http://127.0.0.1:${listeningPort(app)}`;
  });

  afterAll(async () => {
    await app.close();
  });

  function io(token: string | undefined = TOKENS.write, files: Record<string, string> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const written: Record<string, string> = {};
    const value: CommandIo = {
      stdout: (text) => out.push(text),
      stderr: (text) => err.push(text),
      env: { LOYALTY_API_URL: url, ...(token !== undefined ? { LOYALTY_API_TOKEN: token } : {}) },
      fetch: globalThis.fetch,
      readFile: (path) => {
        if (!(path in files)) throw new Error(`ENOENT: ${path}`);
        return files[path]!;
      },
      writeFile: (path, text) => (written[path] = text),
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, Math.min(ms, 20))),
      interactive: false,
    };
    return { io: value, out: () => out.join(''), err: () => err.join(''), written };
  }

  it('member: wallet and latest ledger entries; --json; unknown member and bad token fail with the API code', async () => {
    const shown = io(TOKENS.read);
    expect(await memberCommand(['ann', '--entries', '5'], shown.io)).toBe(0);
    expect(shown.out()).toMatch(/^ann {2}active/);
    expect(shown.out()).toMatch(/tier {6}Member since 2026-11-01/);
    expect(shown.out()).toMatch(/377 more to reach Silver/);
    expect(shown.out()).toMatch(/points {4}spendable 123/);
    expect(shown.out()).toMatch(/earn .*\+123 points {2}p1/);

    const json = io(TOKENS.read);
    expect(await memberCommand(['ann', '--json'], json.io)).toBe(0);
    expect(JSON.parse(json.out())).toMatchObject({ wallet: { memberId: 'ann' }, ledger: [expect.objectContaining({ eventId: 'p1', balance: 'spendable' }), expect.objectContaining({ eventId: 'p1', balance: 'qualifying' })] });

    const missing = io(TOKENS.read);
    expect(await memberCommand(['ghost'], missing.io)).toBe(1);
    expect(missing.err()).toMatch(/MEMBER_NOT_FOUND \(HTTP 404\)/);
    const unauthorized = io('bad-token-0123456789abcdef');
    expect(await memberCommand(['ann'], unauthorized.io)).toBe(1);
    expect(unauthorized.err()).toMatch(/UNAUTHORIZED.*LOYALTY_API_TOKEN/);
    const usage = io();
    expect(await memberCommand([], usage.io)).toBe(2);
    expect(await memberCommand(['ann', '--bogus'], usage.io)).toBe(2);
    const down = io();
    expect(await memberCommand(['ann', '--url', 'http://127.0.0.1:1'], down.io)).toBe(1);
    expect(down.err()).toMatch(/cannot reach the engine API/);
  });

  it('adjust: one member, applied or rejected; usage errors', async () => {
    const applied = io();
    expect(await adjustCommand(['ann', 'credit', '25', '--reason', 'late delivery', '--id', 'cli-1'], applied.io)).toBe(0);
    expect(applied.out()).toMatch(/applied: credit 25 points for ann, spendable now 148 \(event cli-1\)/);
    expect(engine.submitted.at(-1)).toMatchObject({ id: 'cli-1', operator: 'alice', reason: 'late delivery' });

    const rejected = io();
    expect(await adjustCommand(['bob', 'debit', '5000', '--reason', 'x'], rejected.io)).toBe(1);
    expect(rejected.out()).toMatch(/^rejected: /);

    const usage = io();
    expect(await adjustCommand(['ann', 'credit', '25'], usage.io)).toBe(2);
    expect(usage.err()).toMatch(/--reason is required/);
    expect(await adjustCommand(['ann', 'sideways', '25', '--reason', 'x'], usage.io)).toBe(2);
    expect(await adjustCommand(['ann', 'credit', '2.5', '--reason', 'x'], usage.io)).toBe(2);
    // parseArgs errors read as what was expected, not Node's advice about '--'.
    const negative = io();
    expect(await adjustCommand(['alice', 'credit', '-5', '--reason', 'x'], negative.io)).toBe(2);
    expect(negative.err()).toBe('points must be a whole number above 0, got "-5" (to take points away: loyalty adjust <memberId> debit 5 --reason <text>)\n');
    const missing = io();
    expect(await adjustCommand(['ann', 'credit', '5', '--reason'], missing.io)).toBe(2);
    expect(missing.err()).toBe('--reason needs a value (see --help)\n');
    const unknown = io();
    expect(await adjustCommand(['ann', 'credit', '5', '--reason', 'x', '--bogus'], unknown.io)).toBe(2);
    expect(unknown.err()).toBe('unknown option --bogus (see --help)\n');
    const help = io();
    expect(await adjustCommand(['--help'], help.io)).toBe(0);
    expect(help.out()).toBe(`${ADJUST_HELP}\n`);

    const readOnly = io(TOKENS.read);
    expect(await adjustCommand(['ann', 'credit', '1', '--reason', 'x'], readOnly.io)).toBe(1);
    expect(readOnly.err()).toMatch(/FORBIDDEN/);
  });

  it('adjust --file: uploads, shows progress on stderr, summarises, writes the report, exit 3 with bad lines', async () => {
    const csv = 'memberId,direction,points,reason\nann,credit,1,bulk\nbob,credit,2,bulk\nghost,credit,1,bulk\nann,credit,x,bulk\n';
    const run = io(TOKENS.write, { 'adjust.csv': csv });
    expect(await adjustCommand(['--file', 'adjust.csv', '--report', 'out.csv', '--job-id', 'cli-job'], run.io)).toBe(3);
    expect(run.err()).toMatch(/job cli-job: started/);
    expect(run.err()).toMatch(/completed: 2\/2 submitted/);
    expect(run.err()).toMatch(/line 4: invalid \(ghost\): memberId: member ghost is not known/);
    expect(run.err()).toMatch(/line 5: invalid \(ann\): points: /);
    expect(run.out()).toMatch(/job cli-job completed: 4 lines, 2 applied, 0 rejected, 2 invalid, 0 failed/);
    expect(run.written['out.csv']!.split('\n')[0]).toBe('line,id,memberId,status,reason,sequence,duplicate');

    const clean = io(TOKENS.write, { 'good.ndjson': `${JSON.stringify({ memberId: 'ann', direction: 'credit', points: 1, reason: 'n' })}\n` });
    expect(await adjustCommand(['--file', 'good.ndjson'], clean.io)).toBe(0);
    expect(clean.out()).toMatch(/1 lines, 1 applied/);

    const unknown = io(TOKENS.write, { 'x.txt': 'a' });
    expect(await adjustCommand(['--file', 'x.txt'], unknown.io)).toBe(2);
    expect(unknown.err()).toMatch(/--format csv\|ndjson/);
  });

  it('report: a table, CSV and JSON', async () => {
    const tableRun = io(TOKENS.read);
    expect(await reportCommand(['--period', 'day', '--from', '2026-11-01', '--to', '2026-11-03'], tableRun.io)).toBe(0);
    expect(tableRun.out()).toMatch(/KPIs per day, 2026-11-01T00:00:00.000Z to 2026-11-03T00:00:00.000Z/);
    expect(tableRun.out()).toMatch(/period +currency +issued/);
    expect(tableRun.out()).toMatch(/2026-11-02 +points +200 +10 /);
    const csvRun = io(TOKENS.read);
    expect(await reportCommand(['--csv', '--from', '2026-11-01', '--to', '2026-11-03'], csvRun.io)).toBe(0);
    expect(csvRun.out().split('\n')[0]).toMatch(/^period,currency,pointsIssued/);
    const jsonRun = io(TOKENS.read);
    expect(await reportCommand(['--json'], jsonRun.io)).toBe(0);
    expect(JSON.parse(jsonRun.out()).rows).toHaveLength(2);
    const bad = io(TOKENS.read);
    expect(await reportCommand(['--period', 'year'], bad.io)).toBe(2);
    expect(await reportCommand(['--from', 'nope'], bad.io)).toBe(1);
    expect(bad.err()).toMatch(/VALIDATION_FAILED/);
  });

  it('report --program: the program KPIs as a table, CSV and JSON', async () => {
    const tableRun = io(TOKENS.read);
    expect(await reportCommand(['--program', '--period', 'month', '--from', '2026-11-01', '--to', '2026-12-01'], tableRun.io)).toBe(0);
    expect(tableRun.out()).toMatch(/Program KPIs per month, 2026-11-01T00:00:00.000Z to 2026-12-01T00:00:00.000Z/);
    expect(tableRun.out()).toMatch(/period +orders +revenue +AOV +AOV points +AOV no points +orders\/active +return % +repeat % +members +inactive +churned +churn % +retention %/);
    expect(tableRun.out()).toMatch(/2026-11-01 +4 +100\.00 +25\.00 +40\.00 +20\.00 +1\.33 +25\.0 +33\.3 +5 +0 +1 +25\.0 +75\.0/);
    const csvRun = io(TOKENS.read);
    expect(await reportCommand(['--program', '--csv', '--from', '2026-11-01', '--to', '2026-12-01'], csvRun.io)).toBe(0);
    expect(csvRun.out().split('\n')[0]).toMatch(/^period,orders,revenueMinor,.*,paid:plus:members,.*,donated:trees,badge:first-order$/);
    const jsonRun = io(TOKENS.read);
    expect(await reportCommand(['--program', '--json'], jsonRun.io)).toBe(0);
    expect(JSON.parse(jsonRun.out()).rows[0]).toMatchObject({ orders: 4, donations: [{ causeId: 'trees', points: 500 }] });
  });
});
