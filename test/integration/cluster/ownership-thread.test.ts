import type { NatsConnection } from '@nats-io/nats-core';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeLease, leaseKey } from '../../../src/cluster/ownership.js';
import { OwnershipThread } from '../../../src/cluster/ownership-thread.js';
import { assignPartitions } from '../../../src/cluster/rendezvous.js';
import { loadSettings } from '../../../src/config/settings.js';
import { sleep, waitFor } from '../../helpers/engine-process.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * The ownership rounds on their own thread (src/cluster/ownership-thread.ts)
 * against a real nats-server: two instances divide the partitions, a
 * handover waits for the main thread's drain, a crashed thread's partitions
 * move after the TTL, and, the reason for the thread, leases are renewed
 * while the main thread's event loop is blocked for longer than the TTL.
 */

const PARTITIONS = 16;
const TTL_MS = 3_000;
const TICK_MS = 500;

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

interface Instance {
  readonly id: string;
  readonly thread: OwnershipThread;
  readonly events: { kind: 'acquired' | 'releasing' | 'lost'; partition: number; epoch: number; atMs: number }[];
  readonly errors: Error[];
  readonly renewals: number[];
}

function settingsOf(bucket: number): ReturnType<typeof loadSettings> {
  return loadSettings(
    {},
    {
      cluster: 'true',
      natsUrl: server.url,
      partitions: String(PARTITIONS),
      clusterLeaseTtlMs: String(TTL_MS),
      clusterTickMs: String(TICK_MS),
      leasesBucket: `thread-leases-${bucket}`,
      instancesBucket: `thread-instances-${bucket}`,
      logLevel: 'warn',
    },
  );
}

function instance(id: string, bucket: number, drainMs = 0): Instance {
  const events: Instance['events'] = [];
  const errors: Error[] = [];
  const renewals: number[] = [];
  const thread = new OwnershipThread({
    settings: settingsOf(bucket),
    instanceId: id,
    handlers: {
      onAcquired: (partition, epoch) => void events.push({ kind: 'acquired', partition, epoch, atMs: Date.now() }),
      onReleasing: async (partition, epoch) => {
        events.push({ kind: 'releasing', partition, epoch, atMs: Date.now() });
        await new Promise((resolve) => setTimeout(resolve, drainMs));
      },
      onLost: (partition, epoch) => void events.push({ kind: 'lost', partition, epoch, atMs: Date.now() }),
    },
    onError: (error) => void errors.push(error),
    onRenewed: (tookMs) => void renewals.push(tookMs),
  });
  return { id, thread, events, errors, renewals };
}

async function leaseOwners(bucket: number): Promise<Map<number, string>> {
  const kv = await new Kvm(nc).open(`thread-leases-${bucket}`);
  const owners = new Map<number, string>();
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const entry = await kv.get(leaseKey(partition));
    if (entry !== null && entry.operation === 'PUT') owners.set(partition, decodeLease(entry.value).owner);
  }
  return owners;
}

/** waitFor for a condition that needs NATS. */
async function waitUntil(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function sameMap(a: ReadonlyMap<number, string>, b: ReadonlyMap<number, string>): boolean {
  return a.size === b.size && [...a].every(([key, value]) => b.get(key) === value);
}

describe('partition ownership on its own thread', () => {
  it('two instances divide the partitions; a graceful stop hands over after the drain; a dead thread\'s partitions move after the TTL', async () => {
    run += 1;
    const a = instance('thread-a', run, 200);
    const b = instance('thread-b', run);
    await a.thread.start();
    await b.thread.start();
    const expected = assignPartitions(PARTITIONS, ['thread-a', 'thread-b']);
    await waitUntil(async () => sameMap(await leaseOwners(run), expected), 15_000, 'the leases split by rendezvous');
    expect(new Set(a.thread.owned().keys())).toEqual(new Set([...expected].filter(([, owner]) => owner === 'thread-a').map(([p]) => p)));
    expect(a.renewals.length).toBeGreaterThan(0);

    // Graceful stop of a: each of its partitions is drained (200 ms) before its lease goes, then b takes them.
    const stopped = Date.now();
    await a.thread.stop();
    expect(Date.now() - stopped).toBeGreaterThanOrEqual(200);
    const aHeld = [...expected].filter(([, owner]) => owner === 'thread-a').length;
    expect(a.events.filter((event) => event.kind === 'releasing' && event.atMs >= stopped)).toHaveLength(aHeld);
    expect(a.events.filter((event) => event.kind === 'lost')).toHaveLength(0);
    await waitUntil(async () => [...(await leaseOwners(run)).values()].filter((owner) => owner === 'thread-b').length === PARTITIONS, 10_000, 'b holds every lease after a stopped');

    // A crash of b's thread: nothing released, its leases expire by TTL, and c takes them all.
    const c = instance('thread-c', run);
    await c.thread.start();
    await waitFor(() => c.thread.owned().size > 0, 10_000, 'c takes its share');
    const crashed = Date.now();
    await b.thread.abandon();
    await waitFor(() => c.thread.owned().size === PARTITIONS, 20_000, 'c holds every partition after b crashed');
    const tookMs = Date.now() - crashed;
    expect(tookMs).toBeGreaterThanOrEqual(TTL_MS - TICK_MS * 2);
    expect(b.events.filter((event) => event.kind === 'releasing' && event.atMs >= crashed)).toHaveLength(0);
    await c.thread.stop();
    expect(c.errors).toEqual([]);
  }, 60_000);

  it('keeps renewing while the main thread is blocked for longer than the lease TTL', async () => {
    run += 1;
    const a = instance('block-a', run);
    const b = instance('block-b', run);
    await a.thread.start();
    await b.thread.start();
    const expected = assignPartitions(PARTITIONS, ['block-a', 'block-b']);
    await waitUntil(async () => sameMap(await leaseOwners(run), expected), 15_000, 'the leases split by rendezvous');
    const before = a.renewals.length;

    // The main thread busy for twice the TTL: on one thread with it, every lease would have expired and moved to b.
    const until = Date.now() + TTL_MS * 2;
    while (Date.now() < until) {
      /* busy */
    }
    await new Promise((resolve) => setTimeout(resolve, TICK_MS * 2)); // the messages queued meanwhile arrive
    expect(a.events.filter((event) => event.kind === 'lost')).toEqual([]);
    expect(b.events.filter((event) => event.kind === 'acquired')).toHaveLength([...expected.values()].filter((owner) => owner === 'block-b').length);
    expect(sameMap(await leaseOwners(run), expected)).toBe(true);
    // Renewed meanwhile: at least a round per tick of the blocked time, each renewing a's share.
    expect(a.renewals.length - before).toBeGreaterThanOrEqual(((TTL_MS * 2) / TICK_MS - 2) * a.thread.owned().size);
    await Promise.all([a.thread.stop(), b.thread.stop()]);
  }, 60_000);

  it('refuses to start with a NATS it cannot reach, naming the thread', async () => {
    const settings = { ...settingsOf(999), natsUrl: 'nats://127.0.0.1:1' };
    const thread = new OwnershipThread({ settings, instanceId: 'nowhere', handlers: { onAcquired: () => undefined, onReleasing: () => undefined, onLost: () => undefined } });
    await expect(thread.start()).rejects.toMatchObject({ code: 'ERR_OWNERSHIP_THREAD' });
  }, 30_000);
});
