import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BudgetReservations } from '../../../src/cluster/budget-reservations.js';
import { WalletRouter } from '../../../src/cluster/wallet-routing.js';
import { ClusterRig, MEMBERS, PARTITION_MAPPING, PARTITIONS } from '../../helpers/cluster-engines.js';
import { PROJECT_ROOT, sleep, startEngineProcess, tempDataDir, type EngineProcess } from '../../helpers/engine-process.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * The two global pieces of cluster mode in `loyalty start` (docs/cluster.md,
 * "Budgets and the program across instances"), with 2 engine processes on one
 * nats-server:
 * (a) a promotion's global budget drawn by both instances from the cluster's
 *     KV counter in chunks: far more qualifying events than the budget, spread
 *     over both instances' partitions, award exactly the budget in total;
 * (b) a program activated through one instance's API is applied by the other
 *     too (and by an instance started later), and events after it earn by its
 *     rules on every instance.
 * One pair of engines for both (starting two engines and settling their split
 * is most of the time): (b) runs after (a) and switches the program (a)
 * started with.
 */
const TTL_MS = 3_000;
const TICK_MS = 500;
const ADMIN_TOKEN = 'globals-admin-token-0123456789';
const BUDGET_POINTS = 5_000;
const BONUS_POINTS = 7;

const budgetedProgram = (budgetPoints: number) => `id: budgeted
name: Budgeted bonus
currency: EUR
earn: { points: 1, perAmountMinor: 100, rounding: floor }
tiers:
  - { id: member, name: Member, qualifyingPointsMin: 0 }
promotions:
  - id: launch-bonus
    name: Launch bonus, ${BONUS_POINTS} points a purchase while its budget lasts
    startsAt: "2026-01-01T00:00:00Z"
    endsAt: "2027-01-01T00:00:00Z"
    award: { kind: bonus, points: ${BONUS_POINTS} }
    budget:
      global: { points: ${budgetPoints} }
`;

const DOUBLE_RATE = `id: simple
name: Simple points, doubled
currency: EUR
earn: { points: 2, perAmountMinor: 100, rounding: floor }
tiers:
  - { id: member, name: Member, qualifyingPointsMin: 0 }
  - { id: silver, name: Silver, qualifyingPointsMin: 500 }
  - { id: gold, name: Gold, qualifyingPointsMin: 2000 }
`;

let server: TestNatsServer;
let nc: NatsConnection;
let rig: ClusterRig;
let a: EngineProcess;
let b: EngineProcess;
let split: number[];
let startedMs: number;
const dirs: { remove(): void }[] = [];

beforeAll(async () => {
  const started = Date.now();
  server = await startTestNatsServer({ extraConfig: PARTITION_MAPPING });
  nc = await connectTest(server.url);
  rig = await ClusterRig.open(nc, { natsUrl: server.url, leaseTtlMs: TTL_MS, tickMs: TICK_MS, replicas: 1 });
  const dir = tempDataDir('loyalty-globals-program-');
  dirs.push(dir);
  const programFile = join(dir.path, 'budgeted.yaml');
  writeFileSync(programFile, budgetedProgram(BUDGET_POINTS));
  // LOYALTY_CLUSTER_BUDGET_CHUNKS at its default: chunks of 1/100 (50 points, about 7 purchases), so each instance
  // reserves many times, most of them under load.
  [a, b] = await Promise.all([startEngine('engine-a', programFile), startEngine('engine-b', programFile)]);
  split = await rig.waitSplit([a, b], 30_000, (counts) => counts.every((count) => count > 0));
  startedMs = Date.now() - started;
}, 120_000); // 18-28 s on a quiet 2-core machine; 55 s seen with the cores shared by other suites

afterAll(async () => {
  await rig?.close();
  await nc?.close();
  await server?.stop();
  for (const dir of dirs.splice(0)) dir.remove();
});

/** An engine in cluster mode as the rig starts them, with a program file and an admin token. */
async function startEngine(instanceId: string, programFile: string): Promise<EngineProcess> {
  const dir = tempDataDir(`loyalty-globals-${instanceId}-`);
  dirs.push(dir);
  const engine = await startEngineProcess({
    natsUrl: server.url,
    dataDir: dir.path,
    programFile,
    readyTimeoutMs: 60_000,
    env: {
      LOYALTY_CLUSTER: 'true',
      LOYALTY_INSTANCE_ID: instanceId,
      LOYALTY_CLUSTER_LEASE_TTL_MS: String(TTL_MS),
      LOYALTY_CLUSTER_TICK_MS: String(TICK_MS),
      LOYALTY_CLUSTER_REPLICAS: '1',
      LOYALTY_ACTORS: '1',
      // info: the budgets' totals are logged at stop and at a program switch.
      LOYALTY_LOG_LEVEL: 'info',
      LOYALTY_EMBEDDED_NATS_AUTO_INSTALL: 'false',
      LOYALTY_API_TOKENS: `admin:${ADMIN_TOKEN}`,
    },
  });
  rig.engines.push(engine); // so the rig kills it if a test fails
  return engine;
}

/** Every member's spendable points, read at the owner of its partition, and which instance answered. */
async function wallets(): Promise<Map<string, { spendable: number; servedBy: string }>> {
  const router = new WalletRouter(nc, { partitions: PARTITIONS, handoverWaitMs: 5_000 });
  const read = new Map<string, { spendable: number; servedBy: string }>();
  for (let index = 0; index < MEMBERS; index++) {
    const memberId = `m-${index}`;
    const reply = await router.walletReply(memberId);
    const wallet = JSON.parse(reply.json) as { currencies: { currency: string; spendable: number }[] };
    read.set(memberId, { spendable: wallet.currencies.find((currency) => currency.currency === 'points')?.spendable ?? 0, servedBy: reply.servedBy ?? '' });
  }
  return read;
}

async function programOf(engine: EngineProcess): Promise<{ program: { id: string; earn: { points: number } }; source: string }> {
  const response = await fetch(`http://127.0.0.1:${engine.httpPort}/v1/program`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(response.status).toBe(200);
  return (await response.json()) as { program: { id: string; earn: { points: number } }; source: string };
}

/** The budgets' totals an engine logged when it gave its unspent reservations back (at a program switch, at stop). */
function givenBack(engine: EngineProcess): { reservations: number; reservedPoints: number; givenBackPoints: number }[] {
  return engine
    .output()
    .split('\n')
    .filter((line) => line.includes('unspent reservations given back'))
    .map((line) => JSON.parse(line) as { reservations: number; reservedPoints: number; givenBackPoints: number });
}

describe('cluster mode: budgets and the program across instances', () => {
  it("awards exactly a promotion's global budget across two instances, none over", async () => {
    const startedAt = Date.now();
    // 3,000 purchases (every tenth sent twice: a duplicate awards nothing again), all qualifying: 21,000 points
    // of bonus asked for, 4.2 times the budget, on both instances at once.
    await rig.publishCore(rig.batchOf('budget', 3_000));
    await rig.waitDrained(60_000);
    const drainedMs = Date.now() - startedAt;

    const reservations = new BudgetReservations(await new Kvm(nc).open('LOYALTY_BUDGETS'), () => 2);
    const read = await wallets();
    const bonusBy = new Map<string, number>();
    for (const [memberId, base] of rig.expectedBalances()) {
      const wallet = read.get(memberId)!;
      const bonus = wallet.spendable - base;
      expect(bonus, memberId).toBeGreaterThanOrEqual(0);
      bonusBy.set(wallet.servedBy, (bonusBy.get(wallet.servedBy) ?? 0) + bonus);
    }
    const awarded = [...bonusBy.values()].reduce((sum, points) => sum + points, 0);
    expect(awarded).toBe(BUDGET_POINTS);
    // Both instances drew from the budget, and what the cluster reserved is what was awarded: nothing held unspent.
    expect([...bonusBy.keys()].sort()).toEqual(['engine-a', 'engine-b']);
    for (const points of bonusBy.values()) expect(points).toBeGreaterThan(0);
    expect((await reservations.reserved('launch-bonus')).points).toBe(BUDGET_POINTS);
    console.log(
      `cluster budgets: ${awarded} of ${BUDGET_POINTS} points awarded over 3,000 purchases (bonus ${BONUS_POINTS}, 21,000 asked), split ${JSON.stringify(split)} ` +
        `(engines started and split in ${startedMs} ms), by instance ${JSON.stringify(Object.fromEntries(bonusBy))}; published to drained ${drainedMs} ms`,
    );
  }, 90_000);

  it('applies a program activated through one instance on every instance, an instance started later included', async () => {
    const baseBefore = rig.expectedBalances();
    const before = await wallets();

    // Activated through engine-a: written to the cluster's key; engine-a answers once it switched itself.
    const activatedAt = Date.now();
    const response = await fetch(`http://127.0.0.1:${a.httpPort}/v1/program/activate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/yaml' },
      body: DOUBLE_RATE,
    });
    expect(response.status).toBe(200);
    const answeredMs = Date.now() - activatedAt;
    expect((await programOf(a)).program).toMatchObject({ id: 'simple', earn: { points: 2 } });
    // engine-b sees the key change and switches too, without being asked.
    let bSwitchedMs = -1;
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(20)) {
      const seen = await programOf(b);
      if (seen.program.earn.points === 2) {
        expect(seen).toMatchObject({ program: { id: 'simple' }, source: 'api' });
        bSwitchedMs = Date.now() - activatedAt;
        break;
      }
    }
    expect(bSwitchedMs).toBeGreaterThanOrEqual(0);
    // Each gave the old program's unspent budget back at the switch (none was left: all of it was awarded).
    for (const engine of [a, b]) expect(givenBack(engine).at(-1)?.givenBackPoints).toBe(0);

    // Events after the activation earn double, and no bonus (the new program has none), wherever they are consumed.
    await rig.publishCore(rig.batchOf('after', 600));
    await rig.waitDrained(60_000);
    const after = await wallets();
    const servedBy = new Set<string>();
    for (const [memberId, total] of rig.expectedBalances()) {
      const earlier = baseBefore.get(memberId) ?? 0;
      expect(after.get(memberId)!.spendable - before.get(memberId)!.spendable, memberId).toBe(2 * (total - earlier));
      servedBy.add(after.get(memberId)!.servedBy);
    }
    expect([...servedBy].sort()).toEqual(['engine-a', 'engine-b']);

    // An instance started later, from another program file, reads the key first and runs the cluster's program.
    const c = await startEngine('engine-c', join(PROJECT_ROOT, 'config/programs/retail.yaml'));
    expect((await programOf(c)).program).toMatchObject({ id: 'simple', earn: { points: 2 } });
    // It had reserved first chunks for its file's budgets (retail's cyber-week, vip-partner-week) before it read the
    // key; switching, it gave them back whole: nothing of them is reserved.
    expect(givenBack(c).at(-1)?.givenBackPoints).toBeGreaterThan(0);
    const reservations = new BudgetReservations(await new Kvm(nc).open('LOYALTY_BUDGETS'), () => 3);
    expect(await reservations.reserved('cyber-week')).toEqual({ points: 0, uses: 0 });
    expect(await reservations.reserved('vip-partner-week')).toEqual({ points: 0, uses: 0 });
    console.log(
      `cluster program: activation answered by engine-a in ${answeredMs} ms; engine-b running it ${bSwitchedMs} ms after the request; engine-c started on it; ` +
        `the budgeted program's reservations given back at the switch: ${JSON.stringify([a, b].map((engine) => givenBack(engine).at(-1)))}, engine-c's: ${JSON.stringify(givenBack(c).at(-1))}`,
    );
    const exits = await Promise.all([a, b, c].map((engine) => engine.stop()));
    expect(exits).toEqual([0, 0, 0]);
  }, 90_000);
});
