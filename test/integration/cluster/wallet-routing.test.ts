import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { walletJson, type WalletResponse } from '../../../src/api/views.js';
import { openOwnershipBuckets, PartitionOwnership } from '../../../src/cluster/ownership.js';
import { assignPartitions } from '../../../src/cluster/rendezvous.js';
import { PartitionWalletServer, WalletRouter, WalletRoutingError, walletSubject, type PartitionWalletServerOptions } from '../../../src/cluster/wallet-routing.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { sleep, waitFor } from '../../helpers/engine-process.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Wallet reads routed to the partition's owner against a real nats-server:
 * instances (each its own connection and in-memory wallets of the partitions
 * it holds) divide 64 partitions by rendezvous hashing and answer on
 * <prefix>.svc.wallet.p<N>; a router sends each read to its member's
 * partition and rides through a handover; a partition nobody holds fails
 * with PARTITION_UNAVAILABLE after handoverWaitMs; a member sent to another
 * partition's subject is refused. Last, the real PartitionOwnership (leases
 * in KV) drives own/release while a client keeps reading.
 */

const PARTITIONS = 64;
const MEMBERS = 2_000;
const READS = 2_000;

let server: TestNatsServer;
let client: NatsConnection;
let run = 0;
const connections: NatsConnection[] = [];

/** Every member's wallet JSON: what a restored partition holds. */
const truth = new Map<string, string>();
const memberIds = Array.from({ length: MEMBERS }, (_, index) => `member-${String(index).padStart(5, '0')}`);
const membersOf = new Map<number, string[]>();
for (const [index, memberId] of memberIds.entries()) {
  truth.set(memberId, wallet(memberId, index));
  const partition = partitionOf(memberId, PARTITIONS);
  membersOf.set(partition, [...(membersOf.get(partition) ?? []), memberId]);
}

/** A wallet shaped as the API writes it (walletJson), one currency, one voucher. */
function wallet(memberId: string, index: number): string {
  const response: WalletResponse = {
    memberId,
    status: 'active',
    asOf: '2025-03-01T12:00:00.000Z',
    tier: {
      id: 'silver',
      name: 'Silver',
      since: '2024-06-01T00:00:00.000Z',
      basis: 'points',
      measure: 1_200 + index,
      periodEndsAt: '2025-12-31T23:59:59.999Z',
      next: { id: 'gold', name: 'Gold', threshold: 5_000, remaining: 3_800 - index },
      keep: { threshold: 1_000, remaining: 0, by: '2025-12-31T23:59:59.999Z' },
      grace: null,
    },
    currencies: [
      {
        currency: 'points',
        spendable: 10 * index,
        pending: 50,
        qualifying: 1_200 + index,
        debt: 0,
        pendingReleases: [{ releaseAt: '2025-03-15T00:00:00.000Z', points: 50 }],
        expiring: [{ expiresAt: '2025-04-30T23:59:59.999Z', points: 100 }],
        expiringByMonth: [
          { period: '2025-03', points: 0 },
          { period: '2025-04', points: 100 },
          { period: '2025-05', points: 0 },
        ],
        inactivityDeadline: null,
      },
    ],
    vouchers: [{ code: `V-${index}`, benefitId: 'coffee', kind: 'voucher', issuedAt: '2025-02-01T00:00:00.000Z', expiresAt: '2025-05-01T00:00:00.000Z' }],
    paidMembership: null,
    badges: [],
  };
  return walletJson(response);
}

interface Instance {
  readonly id: string;
  readonly nc: NatsConnection;
  /** The wallets of the partitions this instance holds (its "store"). */
  readonly wallets: Map<string, string>;
  readonly server: PartitionWalletServer;
  readonly errors: unknown[];
}

beforeAll(async () => {
  server = await startTestNatsServer();
  client = await connectTest(server.url);
});

afterAll(async () => {
  for (const connection of [client, ...connections]) await connection?.close();
  await server?.stop();
});

function nextPrefix(): string {
  run += 1;
  return `wr${run}`;
}

async function instance(id: string, prefix: string, extra: Partial<PartitionWalletServerOptions> = {}): Promise<Instance> {
  const nc = await connectTest(server.url, { name: id });
  connections.push(nc);
  const wallets = new Map<string, string>();
  const errors: unknown[] = [];
  const walletServer = new PartitionWalletServer(nc, {
    instanceId: id,
    partitions: PARTITIONS,
    subjectPrefix: prefix,
    read: (memberId) => wallets.get(memberId),
    onError: (error) => errors.push(error),
    ...extra,
  });
  return { id, nc, wallets, server: walletServer, errors };
}

/** A partition's state arrives (restore), then its reads are answered. */
async function take(one: Instance, partition: number): Promise<void> {
  for (const memberId of membersOf.get(partition) ?? []) one.wallets.set(memberId, truth.get(memberId)!);
  await one.server.own(partition);
}

/** Reads stop first, then the partition's state goes. */
async function give(one: Instance, partition: number): Promise<void> {
  await one.server.release(partition);
  for (const memberId of membersOf.get(partition) ?? []) one.wallets.delete(memberId);
}

function percentile(sorted: readonly number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

async function rejection(promise: Promise<unknown>): Promise<WalletRoutingError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(WalletRoutingError);
    return error as WalletRoutingError;
  }
  throw new Error('expected the read to fail');
}

describe('wallet reads routed to the partition owner', () => {
  it('three instances answer every member exactly from its owner', async () => {
    const prefix = nextPrefix();
    const all = await Promise.all(['engine-a', 'engine-b', 'engine-c'].map((id) => instance(id, prefix)));
    const owners = assignPartitions(PARTITIONS, all.map((one) => one.id));
    for (const [partition, owner] of owners) await take(all.find((one) => one.id === owner)!, partition);
    const router = new WalletRouter(client, { partitions: PARTITIONS, subjectPrefix: prefix });
    try {
      for (const one of all) {
        expect(one.server.owned()).toEqual([...owners].filter(([, owner]) => owner === one.id).map(([partition]) => partition));
        expect(one.server.owned().length).toBeGreaterThan(10);
      }
      for (const memberId of memberIds.slice(0, 200)) await router.wallet(memberId); // warm up (JIT, connections)

      const latencies: number[] = [];
      const servedBy = new Map<string, number>();
      for (let index = 0; index < READS; index++) {
        const memberId = memberIds[index % MEMBERS]!;
        const startedAt = performance.now();
        const reply = await router.walletReply(memberId);
        latencies.push(performance.now() - startedAt);
        expect(reply.json).toBe(truth.get(memberId));
        expect(reply.servedBy).toBe(owners.get(partitionOf(memberId, PARTITIONS)));
        expect(reply.attempts).toBe(1);
        servedBy.set(reply.servedBy!, (servedBy.get(reply.servedBy!) ?? 0) + 1);
      }
      expect([...servedBy.keys()].sort()).toEqual(['engine-a', 'engine-b', 'engine-c']);
      latencies.sort((a, b) => a - b);

      // 16 reads in flight, as a gateway serving several clients would have.
      const concurrentStartedAt = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < READS) {
            const memberId = memberIds[next++ % MEMBERS]!;
            expect(await router.wallet(memberId)).toBe(truth.get(memberId));
          }
        }),
      );
      const concurrentMs = performance.now() - concurrentStartedAt;
      process.stdout.write(
        `[wallet routing] ${READS} reads one at a time over 3 instances × 64 partitions: median ${percentile(latencies, 0.5).toFixed(2)} ms, ` +
          `p99 ${percentile(latencies, 0.99).toFixed(2)} ms, max ${latencies.at(-1)!.toFixed(2)} ms; 16 in flight: ${Math.round((READS / concurrentMs) * 1000)} reads/s ` +
          `(wallet ${truth.get(memberIds[0]!)!.length} bytes)\n`,
      );
      expect(router.stats()).toMatchObject({ retries: 0, unavailable: 0 });
      expect(all.flatMap((one) => one.errors)).toEqual([]);
    } finally {
      await Promise.all(all.map((one) => one.server.close()));
    }
  }, 30_000);

  it('a partition handed over is answered by its new owner, and a read sent in the gap rides through', async () => {
    const prefix = nextPrefix();
    const [a, b] = await Promise.all(['engine-a', 'engine-b'].map((id) => instance(id, prefix)));
    const owners = assignPartitions(PARTITIONS, [a!.id, b!.id]);
    for (const [partition, owner] of owners) await take(owner === a!.id ? a! : b!, partition);
    const router = new WalletRouter(client, { partitions: PARTITIONS, subjectPrefix: prefix, handoverWaitMs: 3_000 });
    try {
      const moved = a!.server.owned()[0]!;
      const memberId = membersOf.get(moved)![0]!;
      expect((await router.walletReply(memberId)).servedBy).toBe(a!.id);

      const gapMs = 300;
      await give(a!, moved); // the old owner stops answering: requests now find nobody
      const releasedAt = performance.now();
      const inGap = router.walletReply(memberId);
      await sleep(gapMs);
      await take(b!, moved); // the new owner restored the partition and subscribes
      const ownedAt = performance.now();
      const reply = await inGap;
      const answeredAt = performance.now();
      expect(reply.json).toBe(truth.get(memberId));
      expect(reply.servedBy).toBe(b!.id);
      expect(reply.attempts).toBeGreaterThan(1);
      expect(reply.elapsedMs).toBeGreaterThanOrEqual(gapMs - 5);
      expect(reply.elapsedMs).toBeLessThan(gapMs + 1_000);
      process.stdout.write(
        `[wallet routing] manual handover: partition unowned for ${Math.round(ownedAt - releasedAt)} ms; the read sent in the gap answered ${Math.round(reply.elapsedMs)} ms after it was sent, ` +
          `${Math.round(answeredAt - ownedAt)} ms after the new owner subscribed, in ${reply.attempts} attempts\n`,
      );
      // From now on the new owner answers every member of the partition, at the first attempt.
      for (const member of membersOf.get(moved)!) {
        const after = await router.walletReply(member);
        expect([after.servedBy, after.attempts, after.json]).toEqual([b!.id, 1, truth.get(member)]);
      }
      expect(a!.server.owned()).not.toContain(moved);
      expect(b!.server.owned()).toContain(moved);
    } finally {
      await Promise.all([a!, b!].map((one) => one.server.close()));
    }
  }, 30_000);

  it('a partition nobody owns fails with PARTITION_UNAVAILABLE after handoverWaitMs, with bounded retries', async () => {
    const prefix = nextPrefix();
    const only = await instance('engine-a', prefix);
    const orphan = 7;
    for (let partition = 0; partition < PARTITIONS; partition++) if (partition !== orphan) await take(only, partition);
    const handoverWaitMs = 500;
    const router = new WalletRouter(client, { partitions: PARTITIONS, subjectPrefix: prefix, handoverWaitMs });
    try {
      const memberId = membersOf.get(orphan)![0]!;
      const startedAt = performance.now();
      const error = await rejection(router.wallet(memberId));
      const elapsedMs = performance.now() - startedAt;
      expect(error.code).toBe('PARTITION_UNAVAILABLE');
      expect(error.status).toBe(503);
      expect(error.partition).toBe(orphan);
      expect(error.message).toMatch(/partition 7 \(wr\d+\.svc\.wallet\.p7\) had no owner answering for \d+ ms \(handoverWaitMs 500\)/);
      expect(elapsedMs).toBeGreaterThanOrEqual(handoverWaitMs - 5);
      expect(elapsedMs).toBeLessThan(handoverWaitMs + 500);
      // 10, 20, 40, 80, 160, 200, ... ms: about eight attempts in 500 ms, not a busy loop.
      expect(router.stats().retries).toBeGreaterThanOrEqual(3);
      expect(router.stats().retries).toBeLessThanOrEqual(15);
      expect(router.stats().unavailable).toBe(1);
      // The other partitions are unaffected.
      const other = membersOf.get(orphan + 1)![0]!;
      expect(await router.wallet(other)).toBe(truth.get(other));
      process.stdout.write(`[wallet routing] unowned partition: PARTITION_UNAVAILABLE after ${Math.round(elapsedMs)} ms (handoverWaitMs ${handoverWaitMs}), ${router.stats().retries} retries\n`);
    } finally {
      await only.server.close();
    }
  }, 30_000);

  it('refuses a member sent to another partition\'s subject, an unknown member and a malformed request, with codes', async () => {
    const prefix = nextPrefix();
    const only = await instance('engine-a', prefix);
    for (let partition = 0; partition < PARTITIONS; partition++) await take(only, partition);
    const router = new WalletRouter(client, { partitions: PARTITIONS, subjectPrefix: prefix });
    try {
      const memberId = membersOf.get(3)![0]!;
      const wrong = await client.request(walletSubject(prefix, 4), JSON.stringify({ memberId }), { timeout: 2_000 });
      expect(wrong.headers?.get('Nats-Service-Error-Code')).toBe('421');
      expect(wrong.headers?.get('Loyalty-Error-Code')).toBe('WRONG_PARTITION');
      expect(wrong.json<{ error: { code: string; message: string } }>().error).toEqual({
        code: 'WRONG_PARTITION',
        message: `member ${memberId} is in partition 3 of 64, not 4: send it to ${prefix}.svc.wallet.p3`,
      });

      const bad = await client.request(walletSubject(prefix, 4), '{"member": 1}', { timeout: 2_000 });
      expect(bad.headers?.get('Nats-Service-Error-Code')).toBe('400');
      expect(bad.headers?.get('Loyalty-Error-Code')).toBe('VALIDATION_FAILED');
      const huge = await client.request(walletSubject(prefix, 4), JSON.stringify({ memberId, padding: 'x'.repeat(2_000) }), { timeout: 2_000 });
      expect(huge.headers?.get('Loyalty-Error-Code')).toBe('VALIDATION_FAILED');

      const unknown = memberIds.map((_, index) => `nobody-${index}`).find((id) => partitionOf(id, PARTITIONS) === 5)!;
      const missing = await rejection(router.wallet(unknown));
      expect([missing.code, missing.status, missing.partition]).toEqual(['MEMBER_NOT_FOUND', 404, 5]);
      expect(missing.message).toBe(`partition 5 (instance engine-a): member ${unknown} is not known`);

      const invalid = await rejection(router.wallet('not a member id!'));
      expect([invalid.code, invalid.partition]).toEqual(['VALIDATION_FAILED', undefined]);
      expect(router.stats().retries).toBe(0);
    } finally {
      await only.server.close();
    }
  }, 30_000);

  it('an instance whose lease ran out answers PARTITION_NOT_OWNED and unsubscribes; the router then reaches the new owner', async () => {
    const prefix = nextPrefix();
    const stale = new Set<number>();
    const paused = await instance('engine-paused', prefix, { holds: (partition) => !stale.has(partition) });
    const successor = await instance('engine-next', prefix);
    for (let partition = 0; partition < PARTITIONS; partition++) await take(paused, partition);
    const router = new WalletRouter(client, { partitions: PARTITIONS, subjectPrefix: prefix, handoverWaitMs: 3_000 });
    try {
      const partition = 11;
      const memberId = membersOf.get(partition)![0]!;
      stale.add(partition); // its validity ran out; it has not been told (onLost) yet
      const read = router.walletReply(memberId);
      await waitFor(() => !paused.server.owned().includes(partition), 2_000, 'the stale instance to let go of the partition');
      await sleep(100);
      await take(successor, partition);
      const reply = await read;
      expect([reply.servedBy, reply.json]).toEqual([successor.id, truth.get(memberId)]);
      expect(reply.attempts).toBeGreaterThan(1);
      expect(paused.server.owned()).not.toContain(partition);
    } finally {
      await Promise.all([paused, successor].map((one) => one.server.close()));
    }
  }, 30_000);

  it('driven by partition leases: a graceful stop moves its partitions while a client keeps reading, with no failed read', async () => {
    const prefix = nextPrefix();
    run += 1;
    const TTL_MS = 1_500;
    const TICK_MS = 250;
    const kv = await openOwnershipBuckets(client, { leasesBucket: `wallet-leases-${run}`, instancesBucket: `wallet-instances-${run}`, leaseTtlMs: TTL_MS, tickMs: TICK_MS, replicas: 1, create: (create) => create() });
    const ids = ['engine-a', 'engine-b', 'engine-c'];
    const lost: string[] = [];
    const ownershipErrors: unknown[] = [];
    const all = await Promise.all(
      ids.map(async (id) => {
        const one = await instance(id, prefix);
        const ownership: PartitionOwnership = new PartitionOwnership({
          instanceId: id,
          partitions: PARTITIONS,
          ...kv,
          leaseTtlMs: TTL_MS,
          tickMs: TICK_MS,
          handlers: {
            onAcquired: (partition) => take(one, partition),
            onReleasing: (partition) => give(one, partition),
            onLost: (partition, _epoch, reason) => {
              lost.push(`${id} p${partition}: ${reason}`);
              void give(one, partition);
            },
          },
          onError: (error) => ownershipErrors.push(error),
        });
        return { ...one, ownership };
      }),
    );
    // Each instance serves exactly the partitions it holds a lease on, and those are rendezvous' answer.
    const settled = (live: readonly typeof all[number][]): boolean => {
      const expected = assignPartitions(PARTITIONS, live.map((one) => one.id));
      return live.every((one) => {
        const mine = [...expected].filter(([, owner]) => owner === one.id).map(([partition]) => partition);
        return JSON.stringify(one.server.owned()) === JSON.stringify(mine) && one.ownership.owned().size === mine.length;
      });
    };
    await Promise.all(all.map((one) => one.ownership.start()));
    const router = new WalletRouter(client, { partitions: PARTITIONS, subjectPrefix: prefix, handoverWaitMs: 5_000 });
    let reading = true;
    const failures: unknown[] = [];
    let reads = 0;
    let retried = 0;
    let longestMs = 0;
    const readerLoop = (async () => {
      for (let index = 0; reading; index++) {
        const memberId = memberIds[(index * 7) % MEMBERS]!;
        try {
          const reply = await router.walletReply(memberId);
          if (reply.json !== truth.get(memberId)) failures.push(`${memberId}: another wallet`);
          reads += 1;
          if (reply.attempts > 1) retried += 1;
          longestMs = Math.max(longestMs, reply.elapsedMs);
        } catch (error) {
          failures.push(error);
        }
        await sleep(2); // a steady client, not a load test: the machine is shared
      }
    })();
    try {
      await waitFor(() => settled(all), 15_000, 'the three instances to divide and serve the partitions');
      await sleep(500);
      const [a, b, c] = all as [typeof all[number], typeof all[number], typeof all[number]];
      const handed = c.server.owned();
      // One watcher per partition about to move, reading one of its members every 10 ms: a read
      // sent just after the release waits the whole gap, so its time is the gap as a client sees it.
      const gapMs = new Map<number, number>();
      const watchers = handed.map(async (partition) => {
        const memberId = membersOf.get(partition)![0]!;
        while (reading) {
          try {
            const reply = await router.walletReply(memberId);
            if (reply.attempts > 1) gapMs.set(partition, Math.max(gapMs.get(partition) ?? 0, reply.elapsedMs));
          } catch (error) {
            failures.push(error);
          }
          await sleep(10);
        }
      });
      // Not in step with the ticks (the division settled at the end of one): somewhere within a tick.
      await sleep(Math.random() * TICK_MS);
      const readsBefore = reads;
      const stoppedAt = performance.now();
      await c.ownership.stop(); // drains every partition (release) and deletes its leases
      await waitFor(() => settled([a, b]), 15_000, 'the two others to take over and serve the stopped instance\'s partitions');
      const movedMs = performance.now() - stoppedAt;
      const readsWhileMoving = reads - readsBefore;
      await sleep(500);
      reading = false;
      await Promise.all([readerLoop, ...watchers]);
      expect(failures).toEqual([]);
      expect(gapMs.size).toBeGreaterThan(0);
      const gaps = [...gapMs.values()].sort((x, y) => x - y);
      // The client did read while the partitions moved (else the test proves nothing). How many is
      // the machine's: CI on a loaded 2-core machine saw 41 from the stop to 500 ms after, quiet ~100+.
      expect(readsWhileMoving).toBeGreaterThan(0);
      expect(reads - readsBefore).toBeGreaterThan(10);
      expect(c.server.owned()).toEqual([]);
      for (const partition of handed) {
        const memberId = membersOf.get(partition)![0]!;
        expect((await router.walletReply(memberId)).servedBy).toBe(assignPartitions(PARTITIONS, [a.id, b.id]).get(partition));
      }
      process.stdout.write(
        `[wallet routing] lease handover (TTL ${TTL_MS} ms, tick ${TICK_MS} ms): a graceful stop moved ${handed.length} partitions in ${Math.round(movedMs)} ms; ` +
          `a client reading meanwhile: ${reads} reads (${readsWhileMoving} while they moved), 0 failed, ${retried} waited for a new owner (the longest ${Math.round(longestMs)} ms); ` +
          `per moved partition, the longest read of a watcher: median ${Math.round(percentile(gaps, 0.5))} ms, max ${Math.round(gaps.at(-1)!)} ms (${gaps.length} of ${handed.length} partitions caught in a gap)\n`,
      );
      expect(lost).toEqual([]);
      expect(ownershipErrors).toEqual([]);
    } finally {
      reading = false;
      await readerLoop;
      await Promise.all(all.map((one) => one.ownership.stop()));
      await Promise.all(all.map((one) => one.server.close()));
    }
  }, 60_000);
});
