import { parentPort, workerData } from 'node:worker_threads';
import type { NatsConnection } from '@nats-io/nats-core';
import { connectNats } from '../transport/connect.js';
import { withCreateRetries } from '../transport/topology.js';
import { openOwnershipBuckets, PartitionOwnership } from './ownership.js';
import { serializeOwnershipError, type OwnershipToMain, type OwnershipToWorker, type OwnershipWorkerData } from './ownership-protocol.js';

/**
 * The ownership rounds' thread (src/cluster/ownership-thread.ts starts it):
 * its own event loop and NATS connection, so that heartbeats and lease
 * renewals run on time however busy the main thread is with 64 intakes
 * under a backlog. PartitionOwnership runs here unchanged; its handlers are
 * messages to the main thread, and a release waits for the main thread's
 * answer (the partition drained and committed) before its lease is deleted.
 */

const port = parentPort;
if (port === null) throw new Error('src/cluster/ownership-worker.ts runs as a worker thread (src/cluster/ownership-thread.ts starts it)');
const data = workerData as OwnershipWorkerData;

const releases = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
let nextRelease = 1;
let ownership: PartitionOwnership | undefined;
let nc: NatsConnection | undefined;

function post(message: OwnershipToMain): void {
  port!.postMessage(message);
}

async function start(): Promise<void> {
  const { settings, instanceId } = data;
  nc = await connectNats(settings, `loyalty-ownership-${instanceId}`);
  const buckets = await openOwnershipBuckets(nc, {
    leasesBucket: settings.leasesBucket,
    instancesBucket: settings.instancesBucket,
    leaseTtlMs: settings.clusterLeaseTtlMs,
    tickMs: settings.clusterTickMs,
    replicas: settings.clusterReplicas,
    create: (create, what) => withCreateRetries(create, what),
  });
  ownership = new PartitionOwnership({
    instanceId,
    partitions: settings.partitions,
    ...buckets,
    leaseTtlMs: settings.clusterLeaseTtlMs,
    tickMs: settings.clusterTickMs,
    handlers: {
      onAcquired: (partition, epoch) => post({ type: 'acquired', partition, epoch }),
      onReleasing: (partition, epoch) =>
        new Promise<void>((resolve, reject) => {
          const id = nextRelease++;
          releases.set(id, { resolve, reject });
          post({ type: 'releasing', id, partition, epoch });
        }),
      onLost: (partition, epoch, reason) => post({ type: 'lost', partition, epoch, reason }),
    },
    onError: (error) => post({ type: 'roundFailed', error: serializeOwnershipError(error) }),
    onSlowRound: (lateMs, tookMs) => post({ type: 'slowRound', lateMs, tookMs }),
    onRenewed: (tookMs) => post({ type: 'renewed', tookMs }),
  });
  await ownership.start();
}

port.on('message', (message: OwnershipToWorker) => {
  switch (message.type) {
    case 'released': {
      const waiting = releases.get(message.id);
      releases.delete(message.id);
      if (message.error === undefined) waiting?.resolve();
      else waiting?.reject(new Error(message.error.message));
      return;
    }
    case 'giveUp':
      void ownership
        ?.giveUp(message.partition)
        .catch(() => undefined)
        .then(() => post({ type: 'gaveUp', partition: message.partition }));
      return;
    case 'stop':
      void (async () => {
        await ownership?.stop();
        await nc?.close().catch(() => undefined);
        post({ type: 'stopped' });
        port.close();
      })().catch((error: unknown) => post({ type: 'stopFailed', error: serializeOwnershipError(error) }));
      return;
  }
});

start().then(
  () => post({ type: 'started' }),
  (error: unknown) => post({ type: 'startFailed', error: serializeOwnershipError(error) }),
);
