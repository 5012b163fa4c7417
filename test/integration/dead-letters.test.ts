import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { pack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/settings.js';
import { ensureTopology } from '../../src/transport/topology.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { publishAll, startEngineProcess, tempDataDir, waitForAckFloor, type EngineProcess } from '../helpers/engine-process.js';

/**
 * A burst of malformed messages around valid ones: every bad one lands in the
 * dead-letter stream with its reason, every good one is applied, nothing
 * stops the engine.
 */
describe('dead letters', () => {
  let server: TestNatsServer;
  let nc: NatsConnection;
  let engine: EngineProcess;
  const data = tempDataDir('loyalty-dlq-');

  beforeAll(async () => {
    server = await startTestNatsServer();
    nc = await connectTest(server.url);
    await ensureTopology(await jetstreamManager(nc), loadSettings({}, { natsUrl: server.url }));
    engine = await startEngineProcess({ natsUrl: server.url, dataDir: data.path });
  });

  afterAll(async () => {
    await engine?.stop();
    await nc?.close();
    await server?.stop();
    data.remove();
  });

  it('sends each kind of bad message to the dead-letter stream with its reason and applies the valid ones', async () => {
    const encoder = new TextEncoder();
    const msgpackHeaders = headers();
    msgpackHeaders.set('Content-Type', 'application/msgpack');
    const valid = (index: number) => ({
      subject: `loyalty.tx.good-${index % 7}`,
      payload: encoder.encode(
        JSON.stringify({ id: `v-${index}`, memberId: `good-${index % 7}`, type: 'purchase', occurredAt: '2026-11-23T10:00:00Z', amountMinor: 1000, currency: 'EUR' }),
      ),
    });
    const bad: { subject: string; payload: Uint8Array; headers?: ReturnType<typeof headers>; reason: RegExp }[] = [
      { subject: 'loyalty.tx.bob', payload: encoder.encode('{"id": "x", '), reason: /not valid JSON/ },
      { subject: 'loyalty.tx.bob', payload: Uint8Array.of(0xff, 0xfe, 0x00), reason: /not valid UTF-8|not valid JSON/ },
      { subject: 'loyalty.tx.bob', payload: Uint8Array.of(0xc1), headers: msgpackHeaders, reason: /not valid msgpack/ },
      {
        subject: 'loyalty.tx.bob',
        payload: encoder.encode(JSON.stringify({ id: 'w1', memberId: 'bob', type: 'purchase', occurredAt: '2026-11-23T10:00:00Z', amountMinor: '12.50', currency: 'EUR' })),
        reason: /amountMinor/,
      },
      {
        subject: 'loyalty.tx.bob',
        payload: pack({ id: 'w2', memberId: 'bob', type: 'purchase', occurredAt: 'yesterday', amountMinor: 100, currency: 'EUR' }),
        headers: msgpackHeaders,
        reason: /occurredAt/,
      },
      {
        subject: 'loyalty.tx.bob',
        payload: encoder.encode(JSON.stringify({ id: 'w3', memberId: 'bob', type: 'teleport', occurredAt: '2026-11-23T10:00:00Z' })),
        reason: /type/,
      },
      { subject: 'loyalty.tx.bob', payload: new Uint8Array(200 * 1024).fill(0x20), reason: /exceeds the limit/ },
      {
        subject: 'loyalty.tx.bad$id',
        payload: encoder.encode(JSON.stringify({ id: 'w4', memberId: 'bad$id', type: 'purchase', occurredAt: '2026-11-23T10:00:00Z', amountMinor: 100, currency: 'EUR' })),
        reason: /memberId/,
      },
      {
        subject: `loyalty.tx.${'x'.repeat(80)}`,
        payload: encoder.encode(JSON.stringify({ id: 'w5', memberId: 'x'.repeat(80), type: 'purchase', occurredAt: '2026-11-23T10:00:00Z', amountMinor: 100, currency: 'EUR' })),
        reason: /memberId/,
      },
      {
        subject: 'loyalty.tx.alice',
        payload: encoder.encode(JSON.stringify({ id: 'w6', memberId: 'mallory', type: 'purchase', occurredAt: '2026-11-23T10:00:00Z', amountMinor: 100, currency: 'EUR' })),
        reason: /differs from the subject/,
      },
      { subject: 'loyalty.tx.bob', payload: new Uint8Array(0), reason: /empty payload/ },
      {
        // Its points would overflow exact integers: once a poison message that stopped the engine.
        subject: 'loyalty.tx.bob',
        payload: encoder.encode(
          JSON.stringify({
            id: 'w7', memberId: 'bob', type: 'purchase', occurredAt: '2026-11-23T10:00:00Z', amountMinor: 100, currency: 'EUR',
            items: [{ sku: 'X', quantity: 100_000, unitPriceMinor: 9_000_000_000_000_000 }],
          }),
        ),
        reason: /largest exact integer/,
      },
    ];
    const messages: { subject: string; payload: Uint8Array; headers?: ReturnType<typeof headers> }[] = [];
    let validCount = 0;
    for (let round = 0; round < 3; round++) {
      for (const message of bad) {
        messages.push(valid(validCount++));
        messages.push(message);
      }
    }
    const last = await publishAll(nc, messages);
    await waitForAckFloor(nc, last, 60_000);

    const js = jetstream(nc);
    const consumer = await js.consumers.get('LOYALTY_DLQ');
    const letters: { subject: string; reason: string; sequence: string }[] = [];
    const batch = await consumer.fetch({ max_messages: bad.length * 3, expires: 5000 });
    for await (const message of batch) {
      letters.push({
        subject: message.headers?.get('Loyalty-Original-Subject') ?? '',
        reason: message.headers?.get('Loyalty-Dead-Letter-Reason') ?? '',
        sequence: message.headers?.get('Loyalty-Original-Sequence') ?? '',
      });
      if (letters.length === bad.length * 3) break;
    }
    expect(letters).toHaveLength(bad.length * 3);
    for (const [index, expected] of bad.entries()) {
      const matching = letters.filter((letter) => expected.reason.test(letter.reason));
      expect(matching.length, `reason for bad message ${index} (${expected.reason})`).toBeGreaterThanOrEqual(3);
    }
    expect(new Set(letters.map((letter) => letter.sequence)).size).toBe(bad.length * 3);

    const metrics = await (await fetch(`http://127.0.0.1:${engine.httpPort}/metrics`)).text();
    const applied = Number(/loyalty_events_total\{type="purchase",result="applied"\} (\d+)/.exec(metrics)?.[1]);
    expect(applied).toBe(validCount);
    const deadLetters = [...metrics.matchAll(/loyalty_dead_letters_total\{reason="[a-z_]+"\} (\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0);
    expect(deadLetters).toBe(bad.length * 3);
    const health = await fetch(`http://127.0.0.1:${engine.httpPort}/health`);
    expect(health.status).toBe(200);
  }, 120_000);
});
