import { DiscardPolicy, jetstreamManager, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/settings.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import { PubAckRouter, StreamPublishError } from '../../src/transport/pub-acks.js';
import { ensureTopology } from '../../src/transport/topology.js';
import { publishAll, sleep, startEngineProcess, tempDataDir, waitForAckFloor } from '../helpers/engine-process.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';

/**
 * Outcomes count as published only once the outcome stream has stored them
 * (a PubAck per message): an outcome the stream did not take keeps its outbox
 * entry, is published again, and is never dropped silently.
 */

const encoder = new TextEncoder();
const purchase = (id: string, memberId: string) =>
  encoder.encode(JSON.stringify({ id, memberId, type: 'purchase', occurredAt: '2026-11-23T10:00:00.000Z', amountMinor: 12_345, currency: 'EUR' }));

/** The outcome stream as the engine creates it (ensureTopology would also reset the engine's consumer under it). */
async function addOutcomeStream(jsm: JetStreamManager, name: string): Promise<void> {
  await jsm.streams.add({ name, subjects: ['loyalty.outcome.>'], storage: StorageType.File, duplicate_window: 120_000_000_000 });
}

async function storedMessages(jsm: JetStreamManager, stream: string): Promise<number> {
  return (await jsm.streams.info(stream)).state.messages;
}

// One nats-server for the file: the group streams (groups.>, full.>) and the engine's streams do not overlap.
let server: TestNatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  server = await startTestNatsServer();
  nc = await connectTest(server.url);
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('JetStream publishes acknowledged in groups', () => {
  it('resolves a group once the stream has stored every message, duplicates included', async () => {
    await jsm.streams.add({ name: 'GROUPS', subjects: ['groups.>'], storage: StorageType.File, duplicate_window: 60_000_000_000 });
    const router = new PubAckRouter(nc, undefined);
    try {
      const messages = Array.from({ length: 500 }, (_, index) => [`groups.m${index % 7}`, `id-${index}`, `{"n":${index}}`] as const);
      await router.publishGroup(messages, 5_000);
      expect(await storedMessages(jsm, 'GROUPS')).toBe(500);
      // The same message ids again: the stream acks them as duplicates and stores nothing new.
      await router.publishGroup(messages, 5_000);
      expect(await storedMessages(jsm, 'GROUPS')).toBe(500);
      expect(router.inFlight).toBe(0);
    } finally {
      router.close();
    }
  });

  it('rejects a group when no stream takes its subject (no responders)', async () => {
    const router = new PubAckRouter(nc, undefined);
    try {
      await expect(router.publishGroup([['nowhere.at.all', 'x-1', '{}']], 5_000)).rejects.toThrow(/no responders/);
    } finally {
      router.close();
    }
  });

  it('rejects a group when the stream refuses a message (full, discard new)', async () => {
    await jsm.streams.add({ name: 'FULL', subjects: ['full.>'], storage: StorageType.File, max_msgs: 2, discard: DiscardPolicy.New });
    const router = new PubAckRouter(nc, undefined);
    try {
      const error = await router.publishGroup([['full.a', 'f-1', '1'], ['full.a', 'f-2', '2'], ['full.a', 'f-3', '3']], 5_000).catch((failure: unknown) => failure);
      expect(error).toBeInstanceOf(StreamPublishError);
      expect((error as StreamPublishError).code).toBe('ERR_STREAM_PUBLISH');
      expect((error as Error).message).toMatch(/refused/);
    } finally {
      router.close();
    }
  });
});

describe('the engine keeps outcomes the outcome stream did not store', () => {
  beforeAll(async () => {
    await ensureTopology(jsm, loadSettings({}, { natsUrl: server.url }));
  });

  it('publishes them again until the stream has them, then removes their outbox entries; what is left at a stop survives it', async () => {
    const data = tempDataDir();
    const settings = loadSettings({}, { natsUrl: server.url });
    const engine = await startEngineProcess({ natsUrl: server.url, dataDir: data.path, env: { LOYALTY_OUTCOME_PUBLISH_TIMEOUT_MS: '1000' } });
    let stopped = false;
    try {
      // Warm: one event whose outcomes reach the stream.
      let last = await publishAll(nc, [{ subject: 'loyalty.tx.una', payload: purchase('u-0', 'una') }]);
      await waitForAckFloor(nc, last, 20_000);
      for (let tries = 0; (await storedMessages(jsm, settings.outcomeStreamName)) < 2 && tries < 100; tries++) await sleep(50);
      expect(await storedMessages(jsm, settings.outcomeStreamName)).toBe(2); // membership + balance

      // The outcome stream goes away: events are still committed and acked, their outcomes wait.
      await jsm.streams.delete(settings.outcomeStreamName);
      last = await publishAll(nc, [
        { subject: 'loyalty.tx.una', payload: purchase('u-1', 'una') },
        { subject: 'loyalty.tx.vic', payload: purchase('v-1', 'vic') },
      ]);
      await waitForAckFloor(nc, last, 20_000);
      await sleep(1_500); // several failed attempts

      // The stream is back: the waiting outcomes arrive, once each.
      await addOutcomeStream(jsm, settings.outcomeStreamName);
      const expected = 1 + 2; // una's balance, vic's membership and balance
      for (let tries = 0; (await storedMessages(jsm, settings.outcomeStreamName)) < expected && tries < 200; tries++) await sleep(50);
      expect(await storedMessages(jsm, settings.outcomeStreamName)).toBe(expected);

      // Gone again, then a stop: the unacknowledged outcomes stay in the outbox.
      await jsm.streams.delete(settings.outcomeStreamName);
      last = await publishAll(nc, [{ subject: 'loyalty.tx.wes', payload: purchase('w-1', 'wes') }]);
      await waitForAckFloor(nc, last, 20_000);
      expect(await engine.stop()).toBe(0);
      stopped = true;
      const store = new LmdbStore({ dataDir: data.path, mapSizeBytes: settings.lmdbMapSizeBytes });
      const left = [...store.outboxEntries()];
      await store.close();
      expect(left).toHaveLength(1);

      // The next start publishes them and empties the outbox.
      await addOutcomeStream(jsm, settings.outcomeStreamName);
      const again = await startEngineProcess({ natsUrl: server.url, dataDir: data.path });
      try {
        for (let tries = 0; (await storedMessages(jsm, settings.outcomeStreamName)) < 2 && tries < 200; tries++) await sleep(50);
        expect(await storedMessages(jsm, settings.outcomeStreamName)).toBe(2); // wes's membership + balance
      } finally {
        expect(await again.stop()).toBe(0);
      }
      const reopened = new LmdbStore({ dataDir: data.path, mapSizeBytes: settings.lmdbMapSizeBytes });
      expect([...reopened.outboxEntries()]).toEqual([]);
      await reopened.close();
    } finally {
      if (!stopped) await engine.stop();
      data.remove();
    }
  }, 90_000);
});
