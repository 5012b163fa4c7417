import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterProgram, type ActiveProgram } from '../../../src/cluster/program-sync.js';
import { PROJECT_ROOT, waitFor } from '../../helpers/engine-process.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

let server: TestNatsServer;
const connections: NatsConnection[] = [];
const retail = readFileSync(join(PROJECT_ROOT, 'config/programs/retail.yaml'), 'utf8');
const simple = readFileSync(join(PROJECT_ROOT, 'config/programs/simple.yaml'), 'utf8');

beforeAll(async () => {
  server = await startTestNatsServer();
  for (let index = 0; index < 2; index++) connections.push(await connectTest(server.url));
});

afterAll(async () => {
  for (const connection of connections) await connection.close();
  await server?.stop();
});

describe('one active program for every instance', () => {
  it('applies what any instance publishes on every instance, in order, and refuses a bad program before it is published', async () => {
    // One after the other: two creates of one bucket at once can race in nats-server ("subjects overlap with an existing stream").
    const a = new ClusterProgram(await new Kvm(connections[0]!).create('programs', { history: 5 }));
    const b = new ClusterProgram(await new Kvm(connections[1]!).create('programs', { history: 5 }));
    const seenA: ActiveProgram[] = [];
    const seenB: ActiveProgram[] = [];
    const stopA = await a!.watch(async (program) => void seenA.push(program));
    const stopB = await b!.watch(async (program) => void seenB.push(program));
    try {
      expect(await a!.current()).toBeUndefined();
      const first = await a!.publish(retail, 'engine-a', 1_000);
      expect(first.ok).toBe(true);
      const bad = await b!.publish('id: broken\nrewards: 12\n', 'engine-b', 2_000);
      expect(bad.ok).toBe(false);
      const second = await b!.publish(simple, 'engine-b', 3_000);
      expect(second.ok).toBe(true);
      await waitFor(() => seenA.length === 2 && seenB.length === 2, 10_000, 'both instances to apply both programs');
      for (const seen of [seenA, seenB]) {
        expect(seen.map((program) => [program.by, program.activatedAtMs])).toEqual([
          ['engine-a', 1_000],
          ['engine-b', 3_000],
        ]);
      }
      expect(seenA[1]!.revision).toBeGreaterThan(seenA[0]!.revision);
      // An instance started now begins from the current program.
      const late = new ClusterProgram(await new Kvm(connections[0]!).open('programs'));
      expect((await late.current())?.text).toBe(simple);
      const seenLate: ActiveProgram[] = [];
      const stopLate = await late.watch(async (program) => void seenLate.push(program));
      await waitFor(() => seenLate.length === 1, 10_000, 'the late instance to read the current program');
      expect(seenLate[0]!.by).toBe('engine-b');
      await stopLate();
    } finally {
      await stopA();
      await stopB();
    }
  });
});
