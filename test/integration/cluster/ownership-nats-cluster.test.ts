import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openOwnershipBuckets, PartitionOwnership } from '../../../src/cluster/ownership.js';
import { sleep, waitFor } from '../../helpers/engine-process.js';
import { startTestNatsCluster, type TestNatsCluster } from '../../helpers/nats-cluster.js';
import { connectTest } from '../../helpers/nats-server.js';

/**
 * Leases on a 3-node JetStream cluster (buckets with 3 replicas): one
 * nats-server killed with SIGKILL while three instances hold every partition.
 * No partition is ever claimed by two instances, and the partitions held by
 * no one come back within the lease TTL plus the cluster's leader election.
 */

const PARTITIONS = 64;
const TTL_MS = 10_000; // above a JetStream leader election (~6 s measured on 2.9.10): a renewal may wait for one
const TICK_MS = 1_000;

let cluster: TestNatsCluster;
const connections: NatsConnection[] = [];

beforeAll(async () => {
  cluster = await startTestNatsCluster(3);
  for (let index = 0; index < 3; index++) connections.push(await connectTest(cluster.urls, { timeout: 10_000 }));
}, 60_000);

afterAll(async () => {
  for (const connection of connections) await connection.close().catch(() => undefined);
  await cluster?.stop();
});

describe('partition leases on a 3-node nats-server cluster', () => {
  it('stay unique and all held when one nats-server is killed', async () => {
    const errors: string[] = [];
    const setup = new Kvm(connections[0]!);
    // Right after the meta leader is elected, the leader may not know every peer yet ("no suitable peers for placement").
    for (const bucket of ['cluster-leases', 'cluster-instances']) {
      for (let attempt = 0; ; attempt++) {
        try {
          await setup.create(bucket, { ttl: TTL_MS, history: 1, replicas: 3 });
          break;
        } catch (error) {
          if (attempt >= 60 || !/no suitable peers/.test(String(error))) throw error;
          await sleep(500);
        }
      }
    }
    const instances = await Promise.all(
      connections.map(async (connection, index) => {
        // As the engine opens them: with a tick's request timeout (openOwnershipBuckets says why).
        const { leases, instances: live, listInstances } = await openOwnershipBuckets(connection, {
          leasesBucket: 'cluster-leases',
          instancesBucket: 'cluster-instances',
          leaseTtlMs: TTL_MS,
          tickMs: TICK_MS,
          replicas: 3,
          create: (create) => create(),
        });
        return new PartitionOwnership({
          instanceId: `engine-${index}`,
          partitions: PARTITIONS,
          leases,
          instances: live,
          listInstances,
          leaseTtlMs: TTL_MS,
          tickMs: TICK_MS,
          handlers: { onAcquired: () => undefined, onReleasing: () => undefined, onLost: (partition, _epoch, reason) => void errors.push(`lost ${partition}: ${reason}`) },
          onError: (error) => errors.push(String(error)),
        });
      }),
    );
    let doubleClaims = 0;
    let heldLeast = PARTITIONS;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const claimed = new Map<number, number>();
        for (const instance of instances) for (const partition of instance.owned().keys()) claimed.set(partition, (claimed.get(partition) ?? 0) + 1);
        if ([...claimed.values()].some((count) => count > 1)) doubleClaims += 1;
        heldLeast = Math.min(heldLeast, claimed.size);
        await sleep(100);
      }
    })();
    try {
      for (const instance of instances) await instance.start();
      await waitFor(() => instances.reduce((sum, instance) => sum + instance.owned().size, 0) === PARTITIONS && instances.every((instance) => instance.owned().size > 0), 30_000, 'the first division');
      heldLeast = PARTITIONS;
      cluster.servers[0]!.kill();
      const killedAt = Date.now();
      // Through the election and past a full lease term: every renewal must have got through, or been refused, by then.
      await sleep(TTL_MS + 2 * TICK_MS);
      await waitFor(() => instances.reduce((sum, instance) => sum + instance.owned().size, 0) === PARTITIONS, 30_000, 'every partition held again');
      const regainedMs = Date.now() - killedAt;
      expect(doubleClaims).toBe(0);
      // Report what the kill cost: partitions held at the worst moment, and anything lost.
      const losses = errors.filter((error) => error.startsWith('lost '));
      console.info(
        `nats-server kill: least partitions held ${heldLeast}/${PARTITIONS}, all held again ${regainedMs} ms after the kill; ` +
          `${errors.length - losses.length} ticks failed (${[...new Set(errors.map((error) => error.slice(0, 60)))].join(' | ')}), ${losses.length} leases lost`,
      );
      // Safety, not liveness, is asserted: on a loaded CI machine renewals can wait out the election past a lease's validity;
      // the owner then stops itself (a loss) and the partition is taken again, never by two at once. Quiet here: 0 lost, 64/64 held.
      expect(losses.every((loss) => /not renewed in time|refused/.test(loss))).toBe(true);
          } finally {
      sampling = false;
      await sampler;
      for (const instance of instances) await instance.stop().catch(() => undefined);
    }
  }, 120_000);
});
