import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeLease, leaseKey, openOwnershipBuckets, PartitionOwnership, type OwnershipHandlers } from '../../../src/cluster/ownership.js';
import { assignPartitions } from '../../../src/cluster/rendezvous.js';
import { sleep, waitFor } from '../../helpers/engine-process.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Partition leases in a JetStream KV bucket against a real nats-server: three
 * instances divide 64 partitions, a crashed one's partitions move after the
 * lease TTL, a graceful stop hands over at once, a paused owner stops itself
 * and its late renewal is refused.
 */

const PARTITIONS = 64;
const TTL_MS = 1_500;
const TICK_MS = 250;

interface Instance {
  readonly id: string;
  readonly ownership: PartitionOwnership;
  readonly events: { kind: 'acquired' | 'releasing' | 'lost'; partition: number; epoch: number; reason?: string }[];
}

let server: TestNatsServer;
let nc: NatsConnection;
let run = 0;

beforeAll(async () => {
  server = await startTestNatsServer();
  nc = await connectTest(server.url);
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

/** As the engine opens them (openOwnershipBuckets): the live set listed without a consumer. */
async function buckets(): Promise<{ leases: KV; instances: KV; listInstances: () => Promise<string[]> }> {
  run += 1;
  return openOwnershipBuckets(nc, { leasesBucket: `leases-${run}`, instancesBucket: `instances-${run}`, leaseTtlMs: TTL_MS, tickMs: TICK_MS, replicas: 1, create: (create) => create() });
}

/** The bucket with one method replaced (`replace` gets the original, bound). */
function withMethod<M extends 'put' | 'update'>(bucket: KV, method: M, replace: (original: KV[M]) => KV[M]): KV {
  const replaced = replace(bucket[method].bind(bucket) as KV[M]);
  return new Proxy(bucket, {
    get(target, property, receiver) {
      if (property === method) return replaced;
      const value = Reflect.get(target, property, receiver) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function instance(id: string, kv: { leases: KV; instances: KV; listInstances: () => Promise<string[]> }, errors: unknown[]): Instance {
  const events: Instance['events'] = [];
  const handlers: OwnershipHandlers = {
    onAcquired: (partition, epoch) => void events.push({ kind: 'acquired', partition, epoch }),
    onReleasing: (partition, epoch) => void events.push({ kind: 'releasing', partition, epoch }),
    onLost: (partition, epoch, reason) => void events.push({ kind: 'lost', partition, epoch, reason }),
  };
  const ownership = new PartitionOwnership({ instanceId: id, partitions: PARTITIONS, ...kv, leaseTtlMs: TTL_MS, tickMs: TICK_MS, handlers, onError: (error) => errors.push(error) });
  return { id, ownership, events };
}

/** partition → owners that claim it now. */
function claims(instances: readonly Instance[]): Map<number, string[]> {
  const result = new Map<number, string[]>();
  for (const { id, ownership } of instances) {
    for (const partition of ownership.owned().keys()) result.set(partition, [...(result.get(partition) ?? []), id]);
  }
  return result;
}

function settled(instances: readonly Instance[], live: readonly string[]): boolean {
  const expected = assignPartitions(PARTITIONS, live);
  const now = claims(instances);
  return [...expected].every(([partition, owner]) => now.get(partition)?.length === 1 && now.get(partition)![0] === owner);
}

describe('partition leases in a KV bucket', () => {
  it('three instances own every partition exactly once, as rendezvous hashing says, with one epoch per term', async () => {
    const kv = await buckets();
    const errors: unknown[] = [];
    const all = ['engine-a', 'engine-b', 'engine-c'].map((id) => instance(id, kv, errors));
    await Promise.all(all.map((one) => one.ownership.start()));
    try {
      await waitFor(() => settled(all, ['engine-a', 'engine-b', 'engine-c']), 15_000, 'the three instances to divide the partitions');
      // Never two claims on one partition, and the lease in KV names the claimant.
      for (const [partition, owners] of claims(all)) {
        expect(owners).toHaveLength(1);
        const entry = await kv.leases.get(leaseKey(partition));
        expect(decodeLease(entry!.value).owner).toBe(owners[0]);
      }
      const epochs = all.flatMap((one) => one.events.filter((event) => event.kind === 'acquired').map((event) => event.epoch));
      expect(new Set(epochs).size).toBe(epochs.length);
      expect(errors).toEqual([]);
    } finally {
      await Promise.all(all.map((one) => one.ownership.stop()));
    }
  }, 30_000);

  it('moves a crashed instance\'s partitions after the lease TTL, and hands over at once on a graceful stop', async () => {
    const kv = await buckets();
    const errors: unknown[] = [];
    const [a, b, c] = ['engine-a', 'engine-b', 'engine-c'].map((id) => instance(id, kv, errors)) as [Instance, Instance, Instance];
    await Promise.all([a, b, c].map((one) => one.ownership.start()));
    try {
      await waitFor(() => settled([a, b, c], [a.id, b.id, c.id]), 15_000, 'the first division');
      const crashedAt = Date.now();
      c.ownership.abandon(); // kill -9: its leases stay until they expire
      await waitFor(() => settled([a, b], [a.id, b.id]), 15_000, 'the survivors to take the crashed instance\'s partitions');
      const failoverMs = Date.now() - crashedAt;
      expect(failoverMs).toBeGreaterThanOrEqual(TTL_MS - TICK_MS); // not before its leases could expire
      expect(failoverMs).toBeLessThan(TTL_MS * 2 + TICK_MS * 4);

      const stoppedAt = Date.now();
      const bHeld = [...b.ownership.owned().keys()];
      await b.ownership.stop();
      expect(b.events.filter((event) => event.kind === 'releasing').map((event) => event.partition).sort()).toEqual(expect.arrayContaining(bHeld.sort()));
      await waitFor(() => a.ownership.owned().size === PARTITIONS, 15_000, 'the last instance to hold every partition');
      // The released leases were deleted: a waits for the stopped instance's heartbeat to expire, not for 64 leases.
      const handoverMs = Date.now() - stoppedAt;
      expect(handoverMs).toBeLessThan(TTL_MS * 2 + TICK_MS * 4);
      console.info(`lease TTL ${TTL_MS} ms, tick ${TICK_MS} ms: crash failover ${failoverMs} ms, graceful handover ${handoverMs} ms`);
      expect(errors).toEqual([]);
    } finally {
      await a.ownership.stop();
    }
  }, 60_000);

  it('a first round that fails (the bucket not answering yet) is reported and tried again at the next tick', async () => {
    const kv = await buckets();
    const errors: unknown[] = [];
    let refusals = 2;
    // The heartbeat bucket refuses the first two puts, as a just-created R3 bucket without a leader does.
    const flaky = withMethod(kv.instances, 'put', (put) => (...args) => (refusals-- > 0 ? Promise.reject(new Error("no responders: '$KV.instances'")) : put(...args)));
    const one = instance('engine-a', { ...kv, instances: flaky }, errors);
    await one.ownership.start();
    try {
      expect(errors).toHaveLength(1);
      expect(one.ownership.owned().size).toBe(0);
      await waitFor(() => one.ownership.owned().size === PARTITIONS, 10_000, 'the instance to own every partition after its failed first rounds');
      expect(errors.map((error) => String(error))).toEqual(["Error: no responders: '$KV.instances'", "Error: no responders: '$KV.instances'"]);
    } finally {
      await one.ownership.stop();
    }
  }, 30_000);

  it('a renewal stored but whose answer was lost does not read as a lost lease: the next one, refused, finds the lease still its own', async () => {
    const kv = await buckets();
    const errors: unknown[] = [];
    let lostAnswers = 5;
    // Five renewals are stored and then time out, as in a leader election after a server's death.
    const flaky = withMethod(kv.leases, 'update', (update) => async (...args) => {
      const revision = await update(...args);
      if (lostAnswers-- > 0) throw Object.assign(new Error('timeout'), { name: 'TimeoutError' });
      return revision;
    });
    const one = instance('engine-a', { ...kv, leases: flaky }, errors);
    await one.ownership.start();
    try {
      await waitFor(() => lostAnswers < 0, 10_000, 'the lost answers and the renewals after them');
      await sleep(3 * TICK_MS);
      expect(one.events.filter((event) => event.kind === 'lost')).toEqual([]);
      expect(one.ownership.owned().size).toBe(PARTITIONS);
      expect(errors.map(String)).toEqual(Array.from({ length: 5 }, () => 'TimeoutError: timeout'));
    } finally {
      await one.ownership.stop();
    }
  }, 30_000);

  it('a partition given up (its acquisition failed) is won again at a later tick, with a new epoch', async () => {
    const kv = await buckets();
    const errors: unknown[] = [];
    const one = instance('engine-a', kv, errors);
    await one.ownership.start();
    try {
      await waitFor(() => one.ownership.owned().size === PARTITIONS, 10_000, 'the instance to own every partition');
      const first = one.ownership.owned().get(5)!;
      await one.ownership.giveUp(5);
      expect(one.ownership.owned().has(5)).toBe(false);
      await waitFor(() => one.ownership.owned().has(5), 10_000, 'partition 5 won again');
      expect(one.ownership.owned().get(5)!).toBeGreaterThan(first);
      expect(one.events.filter((event) => event.partition === 5 && event.kind === 'acquired').map((event) => event.epoch)).toEqual([first, one.ownership.owned().get(5)]);
      expect(errors).toEqual([]);
    } finally {
      await one.ownership.stop();
    }
  }, 30_000);

  it('a handover whose drain outlasts the lease TTL loses none of the leases kept, and the drained ones move after it', async () => {
    const kv = await buckets();
    const errors: unknown[] = [];
    const lost: number[] = [];
    const released: number[] = [];
    const slow = new PartitionOwnership({
      instanceId: 'engine-a',
      partitions: PARTITIONS,
      ...kv,
      leaseTtlMs: TTL_MS,
      tickMs: TICK_MS,
      handlers: {
        onAcquired: () => undefined,
        // Each handover drains for twice the TTL (a backlog of batches to commit and ack).
        onReleasing: async (partition) => {
          await sleep(2 * TTL_MS);
          released.push(partition);
        },
        onLost: (partition) => void lost.push(partition),
      },
      onError: (error) => errors.push(error),
    });
    await slow.start();
    const b = instance('engine-b', kv, errors);
    try {
      await waitFor(() => slow.owned().size === PARTITIONS, 10_000, 'engine-a owning every partition');
      await b.ownership.start();
      const expected = assignPartitions(PARTITIONS, ['engine-a', 'engine-b']);
      const kept = [...expected].filter(([, owner]) => owner === 'engine-a').map(([partition]) => partition);
      await waitFor(() => b.ownership.owned().size === PARTITIONS - kept.length, 20_000, 'engine-b owning its share after the drains');
      expect(lost).toEqual([]);
      expect([...slow.owned().keys()].sort((x, y) => x - y)).toEqual(kept);
      expect(released.length).toBe(PARTITIONS - kept.length);
      expect(errors).toEqual([]);
    } finally {
      await b.ownership.stop();
      await slow.stop();
    }
  }, 30_000);

  it('a paused owner stops itself before its lease can expire, and its late renewal is refused', async () => {
    const kv = await buckets();
    const errors: unknown[] = [];
    let frozenAt: number | undefined;
    const zombieEvents: Instance['events'] = [];
    // The zombie's clock and ticks are ours to drive: it "sleeps" while the other takes over.
    const zombie = new PartitionOwnership({
      instanceId: 'zombie',
      partitions: 4,
      ...kv,
      leaseTtlMs: TTL_MS,
      tickMs: TICK_MS,
      now: () => frozenAt ?? Date.now(),
      handlers: {
        onAcquired: (partition, epoch) => void zombieEvents.push({ kind: 'acquired', partition, epoch }),
        onReleasing: (partition, epoch) => void zombieEvents.push({ kind: 'releasing', partition, epoch }),
        onLost: (partition, epoch, reason) => void zombieEvents.push({ kind: 'lost', partition, epoch, reason }),
      },
    });
    await zombie.tick();
    expect(zombie.owned().size).toBe(4);
    for (const partition of [0, 1, 2, 3]) expect(zombie.holds(partition)).toBe(true);
    // SIGSTOP: nothing runs for longer than the TTL. Another instance takes every partition meanwhile.
    await sleep(TTL_MS + 500);
    const otherOwnership = new PartitionOwnership({
      instanceId: 'other',
      partitions: 4,
      ...kv,
      leaseTtlMs: TTL_MS,
      tickMs: TICK_MS,
      handlers: { onAcquired: () => undefined, onReleasing: () => undefined, onLost: () => undefined },
    });
    try {
      await otherOwnership.tick();
      expect(otherOwnership.owned().size).toBe(4);
      // SIGCONT: the zombie knows by its own clock that its leases may have gone, before any NATS call.
      for (const partition of [0, 1, 2, 3]) expect(zombie.holds(partition)).toBe(false);
      // Even one that thinks it is still in time (a clock that did not see the pause) is refused by the CAS.
      frozenAt = undefined;
      (zombie as unknown as { held: Map<number, { validUntilMs: number }> }).held.forEach((held) => (held.validUntilMs = Date.now() + 60_000));
      await zombie.tick();
      // It gives up all four: those it should keep by a refused renewal, those rendezvous now gives to `other` by a release
      // whose delete, conditioned on its old revision, leaves the new owner's lease alone.
      expect(zombie.owned().size).toBe(0);
      const lost = zombieEvents.filter((event) => event.kind === 'lost');
      const released = zombieEvents.filter((event) => event.kind === 'releasing');
      expect([...lost, ...released].map((event) => event.partition).sort()).toEqual([0, 1, 2, 3]);
      expect(lost.length).toBeGreaterThan(0);
      expect(lost.every((event) => /refused/.test(event.reason ?? ''))).toBe(true);
      for (const partition of [0, 1, 2, 3]) expect(decodeLease((await kv.leases.get(leaseKey(partition)))!.value).owner).toBe('other');
    } finally {
      zombie.abandon();
      await otherOwnership.stop();
    }
  }, 30_000);
});
