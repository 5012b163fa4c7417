import { jetstreamManager } from '@nats-io/jetstream';
import type { Msg, NatsConnection } from '@nats-io/nats-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/settings.js';
import { loadProgramFile } from '../../src/config/program-file.js';
import { checkLedgerInvariant } from '../../src/domain/ledger.js';
import { partitionOf } from '../../src/routing/partitioner.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import { ensureTopology } from '../../src/transport/topology.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';
import { PROJECT_ROOT, publishAll, startEngineProcess, tempDataDir, waitFor, waitForAckFloor } from '../helpers/engine-process.js';

/**
 * The sample programs, loaded by the engine and run through NATS and the
 * actors: retail (pending points, returns, redemption rules, expiry by the
 * sweep, Cyber Week promotion), travel (miles, partners, a second currency),
 * and a global promotion budget held exactly across actor threads.
 */
const encoder = new TextEncoder();
const event = (body: Record<string, unknown>) => ({ subject: `loyalty.tx.${body.memberId as string}`, payload: encoder.encode(JSON.stringify(body)) });

function collect(nc: NatsConnection): Msg[] {
  const messages: Msg[] = [];
  nc.subscribe('loyalty.outcome.>', {
    callback: (_error, message) => {
      messages.push(message);
    },
  });
  return messages;
}

const outcomesOf = (messages: Msg[], memberId: string) =>
  messages.map((message) => message.json() as Record<string, unknown>).filter((outcome) => outcome.memberId === memberId);

describe('sample programs through NATS and the actors', () => {
  // A server per test: each test's consumer reads the whole stream, and must read only its own events.
  let server: TestNatsServer;
  let nc: NatsConnection;

  beforeEach(async () => {
    server = await startTestNatsServer();
    nc = await connectTest(server.url);
  });

  afterEach(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('retail: pending points, a return, a refused redemption, Cyber Week, and expiry by the sweep', async () => {
    const data = tempDataDir();
    const consumer = 'retail';
    await ensureTopology(await jetstreamManager(nc), loadSettings({}, { natsUrl: server.url, consumerName: consumer }));
    const messages = collect(nc);
    await nc.flush();
    const engine = await startEngineProcess({
      natsUrl: server.url,
      dataDir: data.path,
      programFile: `${PROJECT_ROOT}/config/programs/retail.yaml`,
      env: { LOYALTY_CONSUMER_NAME: consumer, LOYALTY_SWEEP_INTERVAL_MS: '1000' },
    });
    try {
      const book = (quantity: number) => [{ sku: 'BOOK-1', category: 'books', quantity, unitPriceMinor: 2_500 }];
      const last = await publishAll(nc, [
        // March last year: 2 books, 50 EUR → 50 points, pending for 14 days.
        event({ id: 'p1', memberId: 'ret-1', type: 'purchase', occurredAt: '2025-03-10T10:00:00+01:00', amountMinor: 5_000, currency: 'EUR', items: book(2) }),
        // Pending points cannot be spent yet.
        event({ id: 'r1', memberId: 'ret-1', type: 'redemption', occurredAt: '2025-03-11T10:00:00+01:00', rewardId: 'voucher-5', points: 500, currency: 'points' }),
        // One book back inside the window: 25 pending points clawed back.
        event({ id: 'ret1', memberId: 'ret-1', type: 'return', occurredAt: '2025-03-15T10:00:00+01:00', orderId: 'p1', lines: [{ sku: 'BOOK-1', quantity: 1 }] }),
        // April: 100 EUR of books → 100 points; everything expires 12 months after earning, long before today.
        event({ id: 'p2', memberId: 'ret-1', type: 'purchase', occurredAt: '2025-04-01T10:00:00+02:00', amountMinor: 10_000, currency: 'EUR', items: [{ sku: 'BOOK-2', category: 'books', quantity: 4, unitPriceMinor: 2_500 }] }),
        // Cyber Week this year: the promotion adds its own points.
        event({ id: 'cw1', memberId: 'cw-1', type: 'purchase', occurredAt: '2026-11-24T12:00:00+01:00', amountMinor: 10_000, currency: 'EUR', items: [{ sku: 'TOASTER', category: 'kitchen', quantity: 1, unitPriceMinor: 10_000 }] }),
      ]);
      await waitForAckFloor(nc, last, 30_000, consumer);

      const rejected = outcomesOf(messages, 'ret-1').find((outcome) => outcome.eventId === 'r1');
      expect(rejected).toMatchObject({ kind: 'rejected' });
      expect(String(rejected?.reason)).not.toBe('');
      // The sweep (every second, wall clock: today) expires what was earned in 2025.
      await waitFor(() => outcomesOf(messages, 'ret-1').some((outcome) => outcome.kind === 'points_expired'), 20_000, 'points_expired from the sweep');
    } finally {
      expect(await engine.stop()).toBe(0);
    }

    const program = loadProgramFile(`${PROJECT_ROOT}/config/programs/retail.yaml`);
    const store = new LmdbStore({ dataDir: data.path, mapSizeBytes: 256 * 1024 * 1024, partitions: 64 });
    try {
      const member = store.member('ret-1')!;
      const ledger = [...store.ledgerOf(partitionOf('ret-1', 64), 'ret-1')];
      expect(checkLedgerInvariant(member, ledger, program)).toMatchObject({ ok: true });
      const points = member.currencies.points!;
      expect(points.spendable).toBe(0);
      expect(points.pending).toBe(0);
      const sum = (kind: string, balance: string) => ledger.filter((entry) => entry.kind === kind && entry.balance === balance).reduce((total, entry) => total + entry.points, 0);
      expect(sum('earn', 'pending')).toBe(150); // 50 + 100 base points, no rule or promotion applies to books in 2025
      expect(sum('clawback', 'pending')).toBe(-25); // one of the two books
      expect(sum('release', 'spendable')).toBe(125); // what was left went spendable after 14 days
      expect(sum('expire', 'spendable')).toBe(-125); // and expired 12 months after earning
      expect(ledger.some((entry) => entry.eventId === 'r1')).toBe(false); // the refused redemption changed nothing

      const cyber = [...store.ledgerOf(partitionOf('cw-1', 64), 'cw-1')];
      const promotion = cyber.filter((entry) => entry.promotionId === 'cyber-week' && entry.balance === 'pending');
      expect(promotion.reduce((total, entry) => total + entry.points, 0)).toBe(100); // double points: 100 base + 100 promotion
      expect(checkLedgerInvariant(store.member('cw-1')!, cyber, program)).toMatchObject({ ok: true });
    } finally {
      await store.close();
      data.remove();
    }
  }, 120_000);

  it('travel: miles from partners and a second currency', async () => {
    const data = tempDataDir();
    const consumer = 'travel';
    await ensureTopology(await jetstreamManager(nc), loadSettings({}, { natsUrl: server.url, consumerName: consumer }));
    const engine = await startEngineProcess({
      natsUrl: server.url,
      dataDir: data.path,
      programFile: `${PROJECT_ROOT}/config/programs/travel.yaml`,
      env: { LOYALTY_CONSUMER_NAME: consumer },
    });
    try {
      const last = await publishAll(nc, [
        // The airline's sign-up enrolls the member (the program does not enroll on a first purchase).
        event({ id: 'e1', memberId: 'fly-1', type: 'enroll', occurredAt: '2026-11-19T10:00:00Z' }),
        // A hotel stay of 100 USD: 5 miles per USD × 1.4 = 700 miles.
        event({ id: 't1', memberId: 'fly-1', type: 'purchase', occurredAt: '2026-11-20T10:00:00Z', amountMinor: 10_000, currency: 'USD', partner: 'grand-hotels' }),
        // A car rental of 50 USD: 250 miles, plus 500 bonus points in the second currency.
        event({ id: 't2', memberId: 'fly-1', type: 'purchase', occurredAt: '2026-11-21T10:00:00Z', amountMinor: 5_000, currency: 'USD', partner: 'swift-cars' }),
      ]);
      await waitForAckFloor(nc, last, 30_000, consumer);
    } finally {
      expect(await engine.stop()).toBe(0);
    }
    const store = new LmdbStore({ dataDir: data.path, mapSizeBytes: 256 * 1024 * 1024, partitions: 64 });
    try {
      const member = store.member('fly-1')!;
      expect(member.currencies.miles?.spendable).toBe(950);
      expect(member.currencies.miles?.qualifying).toBe(950);
      expect(member.currencies['bonus-points']?.spendable).toBe(500);
      expect(member.currencies['bonus-points']?.qualifying ?? 0).toBe(0);
      const ledger = [...store.ledgerOf(partitionOf('fly-1', 64), 'fly-1')];
      expect(checkLedgerInvariant(member, ledger, loadProgramFile(`${PROJECT_ROOT}/config/programs/travel.yaml`))).toMatchObject({ ok: true });
      expect(new Set(ledger.filter((entry) => entry.eventId === 't2').map((entry) => entry.ruleId))).toContain('car-rental');
    } finally {
      await store.close();
      data.remove();
    }
  }, 120_000);

  it('holds a global promotion budget exactly across actor threads', async () => {
    const data = tempDataDir();
    const consumer = 'budget';
    await ensureTopology(await jetstreamManager(nc), loadSettings({}, { natsUrl: server.url, consumerName: consumer }));
    const engine = await startEngineProcess({
      natsUrl: server.url,
      dataDir: data.path,
      programFile: `${PROJECT_ROOT}/test/fixtures/budget-program.yaml`,
      env: { LOYALTY_CONSUMER_NAME: consumer, LOYALTY_ACTORS: '2' },
    });
    const members = Array.from({ length: 1_000 }, (_, index) => `buyer-${index}`);
    try {
      const last = await publishAll(
        nc,
        members.map((memberId, index) =>
          event({ id: `b-${index}`, memberId, type: 'purchase', occurredAt: '2026-11-23T10:00:00Z', amountMinor: 1_000, currency: 'EUR' }),
        ),
      );
      await waitForAckFloor(nc, last, 30_000, consumer);
    } finally {
      expect(await engine.stop()).toBe(0);
    }
    const store = new LmdbStore({ dataDir: data.path, mapSizeBytes: 256 * 1024 * 1024, partitions: 64 });
    try {
      let winners = 0;
      const actorsSeen = new Set<number>();
      for (const memberId of members) {
        const ledger = [...store.ledgerOf(partitionOf(memberId, 64), memberId)];
        const promoted = ledger.filter((entry) => entry.promotionId === 'first-hundred' && entry.balance === 'spendable');
        if (promoted.length > 0) {
          winners += 1;
          actorsSeen.add(partitionOf(memberId, 64) % 2);
          expect(promoted.reduce((total, entry) => total + entry.points, 0)).toBe(500);
        }
      }
      // Each actor owns fewer than 600 of the 1,000 buyers, so neither can use the
      // budget up alone: both threads draw from it, and together exactly 600 win.
      const buyersPerActor = [0, 1].map((actor) => members.filter((memberId) => partitionOf(memberId, 64) % 2 === actor).length);
      expect(Math.max(...buyersPerActor)).toBeLessThan(600);
      expect(winners).toBe(600);
      expect(actorsSeen.size).toBe(2);
      expect(store.budgetTotals().get('first-hundred')).toEqual({ points: 300_000, uses: 600 });
    } finally {
      await store.close();
      data.remove();
    }
  }, 120_000);
});
