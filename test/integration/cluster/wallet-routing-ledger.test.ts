import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HEADER_INSTANCE,
  HEADER_READ,
  PartitionWalletServer,
  WalletRouter,
  WalletRoutingError,
  walletSubject,
  type LedgerRequest,
} from '../../../src/cluster/wallet-routing.js';
import { HEADER_ERROR_CODE } from '../../../src/transport/services.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Ledger pages on the wallet's partition subjects (issue 17): the request
 * {"memberId", "ledger": {...}} reaches the owner's readLedger with the query
 * checked and the bound its reply must keep under max_payload; the reply is
 * marked Loyalty-Read: ledger, and a router refuses one that is not (an
 * instance that predates ledger reads answers such a request with the
 * wallet). Bad queries, a server without readLedger and a reply over
 * max_payload are refused with codes instead of timing out.
 */

const PARTITIONS = 16;
const MAX_PAYLOAD = 64 * 1024;
let server: TestNatsServer;
let ownerConnection: NatsConnection;
let client: NatsConnection;
let run = 0;

beforeAll(async () => {
  server = await startTestNatsServer({ extraConfig: `max_payload: ${MAX_PAYLOAD}` });
  ownerConnection = await connectTest(server.url, { name: 'owner' });
  client = await connectTest(server.url, { name: 'client' });
});

afterAll(async () => {
  await client?.close();
  await ownerConnection?.close();
  await server?.stop();
});

/** The WalletRoutingError a read fails with. */
const rejection = (read: Promise<unknown>): Promise<WalletRoutingError> =>
  read.then(
    () => expect.fail('expected the read to fail'),
    (error: unknown) => (expect(error).toBeInstanceOf(WalletRoutingError), error as WalletRoutingError),
  );

const page = (memberId: string, query: LedgerRequest) => JSON.stringify({ memberId, entries: [{ seq: query.afterSeq + 1 }], nextCursor: null });

describe('ledger pages on the partition wallet subjects', () => {
  it('carries the query to the owner and its page back, marked, beside unchanged wallet reads', async () => {
    const prefix = `wl${++run}`;
    const asked: { memberId: string; partition: number; query: LedgerRequest; bytesMax: number }[] = [];
    const owner = new PartitionWalletServer(ownerConnection, {
      instanceId: 'owner-a',
      partitions: PARTITIONS,
      subjectPrefix: prefix,
      read: (memberId) => (memberId === 'nobody' ? undefined : `{"memberId":"${memberId}","wallet":true}`),
      readLedger: async (memberId, partition, query, bytesMax) => {
        asked.push({ memberId, partition, query, bytesMax });
        return memberId === 'nobody' ? undefined : page(memberId, query);
      },
    });
    const router = new WalletRouter(client, { partitions: PARTITIONS, subjectPrefix: prefix, handoverWaitMs: 0 });
    try {
      for (let partition = 0; partition < PARTITIONS; partition++) await owner.own(partition);
      const query = { afterSeq: 7, limit: 3, kinds: ['earn', 'adjustment'], fromMs: 1_000, toMs: 2_000 };
      const reply = await router.ledgerReply('ann', { ...query, extra: 'dropped' } as LedgerRequest);
      expect(reply.json).toBe(page('ann', query));
      expect(reply).toMatchObject({ partition: partitionOf('ann', PARTITIONS), servedBy: 'owner-a', attempts: 1 });
      expect(asked).toEqual([{ memberId: 'ann', partition: partitionOf('ann', PARTITIONS), query, bytesMax: MAX_PAYLOAD - 4_096 }]);
      expect(await router.ledger('bob', { afterSeq: 0, limit: 1 })).toBe(page('bob', { afterSeq: 0, limit: 1 }));
      expect(asked.at(-1)!.query).toEqual({ afterSeq: 0, limit: 1 });
      expect((await rejection(router.ledger('nobody', { afterSeq: 0, limit: 1 }))).code).toBe('MEMBER_NOT_FOUND');

      // The wallet read is as before: no Loyalty-Read header, the wallet text.
      expect(await router.wallet('ann')).toBe('{"memberId":"ann","wallet":true}');
      const raw = await client.request(walletSubject(prefix, partitionOf('ann', PARTITIONS)), JSON.stringify({ memberId: 'ann' }));
      expect(raw.headers?.get(HEADER_READ) ?? '').toBe('');
      const rawLedger = await client.request(walletSubject(prefix, partitionOf('ann', PARTITIONS)), JSON.stringify({ memberId: 'ann', ledger: { afterSeq: 0, limit: 2 } }));
      expect(rawLedger.headers?.get(HEADER_READ)).toBe('ledger');
    } finally {
      await owner.close();
    }
  });

  it('refuses a malformed ledger query, and a server without ledger reads, with VALIDATION_FAILED', async () => {
    const prefix = `wl${++run}`;
    const read = () => '{"wallet":true}';
    const owner = new PartitionWalletServer(ownerConnection, { instanceId: 'owner-b', partitions: PARTITIONS, subjectPrefix: prefix, read, readLedger: () => '{}' });
    const walletsOnly = new PartitionWalletServer(ownerConnection, { instanceId: 'owner-c', partitions: PARTITIONS, subjectPrefix: `${prefix}w`, read });
    try {
      const partition = partitionOf('ann', PARTITIONS);
      await owner.own(partition);
      await walletsOnly.own(partition);
      for (const ledger of [
        { afterSeq: 0, limit: 0 },
        { afterSeq: 0, limit: 1_001 },
        { afterSeq: -1, limit: 5 },
        { afterSeq: 1.5, limit: 5 },
        { afterSeq: 0, limit: 5, kinds: ['earn', 'bogus'] },
        { afterSeq: 0, limit: 5, kinds: 'earn' },
        { afterSeq: 0, limit: 5, fromMs: 'yesterday' },
        { afterSeq: 0, limit: 5, cursor: 'x' },
        [],
        'page 2',
        null,
      ]) {
        const reply = await client.request(walletSubject(prefix, partition), JSON.stringify({ memberId: 'ann', ledger }));
        expect(reply.headers?.get(HEADER_ERROR_CODE), JSON.stringify(ledger)).toBe('VALIDATION_FAILED');
        expect(reply.headers?.get(HEADER_INSTANCE)).toBe('owner-b');
        expect(reply.json<{ error: { message: string } }>().error.message).toMatch(/^ledger: |^request must be/);
      }
      const router = new WalletRouter(client, { partitions: PARTITIONS, subjectPrefix: `${prefix}w`, handoverWaitMs: 0 });
      const refused = await rejection(router.ledger('ann', { afterSeq: 0, limit: 5 }));
      expect(refused.code).toBe('VALIDATION_FAILED');
      expect(refused.message).toContain('owner-c does not serve ledger reads');
      expect(await router.wallet('ann')).toBe('{"wallet":true}');
    } finally {
      await owner.close();
      await walletsOnly.close();
    }
  });

  it('refuses an answer that is not marked a ledger page (an older instance answering the wallet)', async () => {
    const prefix = `wl${++run}`;
    const partition = partitionOf('ann', PARTITIONS);
    // An instance of a version before ledger reads: it answers {"memberId", ...} with the wallet, whatever else the request holds.
    const older = ownerConnection.subscribe(walletSubject(prefix, partition), {
      callback: (_error, message) => {
        const headers = natsHeaders();
        headers.set(HEADER_INSTANCE, 'owner-old');
        message.respond('{"memberId":"ann","wallet":true}', { headers });
      },
    });
    await ownerConnection.flush();
    try {
      const router = new WalletRouter(client, { partitions: PARTITIONS, subjectPrefix: prefix, handoverWaitMs: 0 });
      const refused = await rejection(router.ledger('ann', { afterSeq: 0, limit: 5 }));
      expect(refused.code).toBe('INTERNAL_ERROR');
      expect(refused.partition).toBe(partition);
      expect(refused.message).toContain('owner-old');
      expect(refused.message).toContain(HEADER_READ);
      expect(await router.wallet('ann')).toBe('{"memberId":"ann","wallet":true}');
    } finally {
      older.unsubscribe();
    }
  });

  it('answers a reply that would pass max_payload with INTERNAL_ERROR, not silence', async () => {
    const prefix = `wl${++run}`;
    const huge = `{"memberId":"ann","entries":[${'"x",'.repeat(20_000)}"x"],"nextCursor":null}`;
    expect(huge.length).toBeGreaterThan(MAX_PAYLOAD);
    const owner = new PartitionWalletServer(ownerConnection, {
      instanceId: 'owner-d',
      partitions: PARTITIONS,
      subjectPrefix: prefix,
      read: () => huge,
      readLedger: () => huge,
    });
    try {
      await owner.own(partitionOf('ann', PARTITIONS));
      const router = new WalletRouter(client, { partitions: PARTITIONS, subjectPrefix: prefix, handoverWaitMs: 0, requestTimeoutMs: 2_000 });
      for (const read of [() => router.ledger('ann', { afterSeq: 0, limit: 500 }), () => router.wallet('ann')]) {
        const startedAt = Date.now();
        const refused = await rejection(read());
        expect(refused.code).toBe('INTERNAL_ERROR');
        expect(refused.message).toMatch(/more than max_payload \(65536\) allows/);
        expect(Date.now() - startedAt).toBeLessThan(1_000);
      }
    } finally {
      await owner.close();
    }
  });
});
