import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/settings.js';
import { ensureTopology } from '../../src/transport/topology.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { publishAll, startEngineProcess, tempDataDir, waitFor, waitForAckFloor } from '../helpers/engine-process.js';

/**
 * Per-member order under load. A few hot members get most events, published
 * while the engine consumes, so each actor has several batches queued and in
 * flight at once; every balance outcome must equal the running sum of that
 * member's events in stream order. (Final sums cannot see reordering: this
 * once caught Piscina putting a busy actor's batch behind a later one.)
 */
describe('per-member order', () => {
  let server: TestNatsServer;
  let nc: NatsConnection;
  const data = tempDataDir('loyalty-order-');

  beforeAll(async () => {
    server = await startTestNatsServer();
    nc = await connectTest(server.url);
  });

  afterAll(async () => {
    await nc?.close();
    await server?.stop();
    data.remove();
  });

  it('reports every balance in stream order while batches queue up behind each other', async () => {
    await ensureTopology(await jetstreamManager(nc), loadSettings({}, { natsUrl: server.url }));
    const engine = await startEngineProcess({ natsUrl: server.url, dataDir: data.path, env: { LOYALTY_BATCH_SIZE_MAX: '256' } });
    const reported = new Map<string, number>();
    nc.subscribe('loyalty.outcome.balance.>', {
      callback: (_error, message) => {
        const outcome = message.json() as { eventId: string; spendable: number };
        if (!reported.has(outcome.eventId)) reported.set(outcome.eventId, outcome.spendable);
      },
    });
    try {
      const encoder = new TextEncoder();
      const running = new Map<string, number>();
      const expected = new Map<string, number>();
      const messages = [];
      for (let index = 0; index < 40_000; index++) {
        // Half the events to four hot members, the rest over 2,000.
        const memberId = index % 2 === 0 ? `hot-${index % 8}` : `m-${(index * 7919) % 2_000}`;
        const amountMinor = 100 + ((index * 7919) % 50_000);
        running.set(memberId, (running.get(memberId) ?? 0) + Math.floor(amountMinor / 100));
        expected.set(`o-${index}`, running.get(memberId)!);
        messages.push({
          subject: `loyalty.tx.${memberId}`,
          payload: encoder.encode(JSON.stringify({ id: `o-${index}`, memberId, type: 'purchase', occurredAt: '2026-11-23T10:00:00Z', amountMinor, currency: 'EUR' })),
        });
      }
      const last = await publishAll(nc, messages);
      await waitForAckFloor(nc, last, 120_000);
      // Acked means committed; the outcomes may still be on their way: wait for all of them.
      await waitFor(() => reported.size >= expected.size, 30_000, `outcomes of all ${expected.size} events (got ${reported.size})`);
      const wrong = [...expected].filter(([eventId, balance]) => reported.has(eventId) && reported.get(eventId) !== balance);
      expect(reported.size).toBe(expected.size);
      expect(wrong.slice(0, 5)).toEqual([]);
    } finally {
      expect(await engine.stop()).toBe(0);
    }
  }, 180_000);
});
