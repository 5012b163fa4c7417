import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BudgetReservations } from '../../../src/cluster/budget-reservations.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * A promotion budget shared by three instances on their own NATS connections,
 * racing: never more granted than the limit, and all of it granted once every
 * instance gave back what it held unspent.
 */

let server: TestNatsServer;
const connections: NatsConnection[] = [];

beforeAll(async () => {
  server = await startTestNatsServer();
  for (let index = 0; index < 3; index++) connections.push(await connectTest(server.url));
});

afterAll(async () => {
  for (const connection of connections) await connection.close();
  await server?.stop();
});

/** A seeded stream of grant requests (points per event). */
function requests(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    return 1 + (state % 60);
  };
}

describe('budget reservations across instances', () => {
  it('never grants more than the limit and grants all of it, with three instances racing', async () => {
    const limits = { points: 10_000, uses: 2_000 };
    // Opened one after the other: three creates of one bucket at once can race in nats-server
    // ("subjects overlap with an existing stream", seen once in CI).
    const instances: BudgetReservations[] = [];
    for (const connection of connections) instances.push(new BudgetReservations(await new Kvm(connection).create('budgets-race', { history: 1 }), () => 3));
    const granted = [0, 0, 0];
    const grantedUses = [0, 0, 0];
    const allowance = instances.map(() => ({ points: 0, uses: 0 }));
    // Each instance grants events from its local allowance and reserves a chunk when it runs dry, until the budget refuses it.
    const run = async (index: number): Promise<void> => {
      const next = requests(index + 1);
      for (;;) {
        const local = allowance[index]!;
        if (local.points === 0 || local.uses === 0) {
          const more = await instances[index]!.reserve('cyber', limits, { points: 250, uses: 50 });
          if (more.points === 0 && more.uses === 0 && (local.points === 0 || local.uses === 0)) return;
          local.points += more.points;
          local.uses += more.uses;
          if (local.points === 0 || local.uses === 0) return; // one kind is spent: no grant can be made
        }
        const grant = Math.min(next(), local.points);
        local.points -= grant;
        local.uses -= 1;
        granted[index] = granted[index]! + grant;
        grantedUses[index] = grantedUses[index]! + 1;
      }
    };
    await Promise.all([0, 1, 2].map(run));
    // Give back what is held unspent; the others, asking again, spend it.
    for (let index = 0; index < 3; index++) {
      await instances[index]!.giveBack('cyber', allowance[index]!);
      allowance[index] = { points: 0, uses: 0 };
    }
    await Promise.all([0, 1, 2].map(run));
    for (let index = 0; index < 3; index++) await instances[index]!.giveBack('cyber', allowance[index]!);

    const totalPoints = granted.reduce((sum, value) => sum + value, 0);
    const totalUses = grantedUses.reduce((sum, value) => sum + value, 0);
    expect(totalPoints).toBeLessThanOrEqual(limits.points);
    expect(totalUses).toBeLessThanOrEqual(limits.uses);
    expect(totalPoints === limits.points || totalUses === limits.uses).toBe(true); // spent: one of the limits is reached exactly
    expect(await instances[0]!.reserved('cyber')).toEqual({ points: totalPoints, uses: totalUses });
  }, 60_000);

  it('shrinks the chunk to the remainder shared by the live instances near the end', async () => {
    const reservations = new BudgetReservations(await new Kvm(connections[0]!).create('budgets-share', { history: 1 }), () => 4);
    expect(await reservations.reserve('p1', { points: 100, uses: null }, { points: 90, uses: 1 })).toEqual({ points: 25, uses: 1 });
    expect(await reservations.reserve('p1', { points: 100, uses: null }, { points: 90, uses: 1 })).toEqual({ points: 19, uses: 1 });
    await reservations.giveBack('p1', { points: 44, uses: 2 });
    expect(await reservations.reserved('p1')).toEqual({ points: 0, uses: 0 });
    expect(await reservations.reserve('p2', { points: 0, uses: null }, { points: 5, uses: 1 })).toEqual({ points: 0, uses: 1 });
    await expect(reservations.giveBack('p3', { points: 1, uses: 0 })).rejects.toThrow(/never reserved/);
  });
});
