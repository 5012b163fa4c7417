import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterRig, PARTITION_MAPPING, PARTITIONS } from '../../helpers/cluster-engines.js';
import { sleep } from '../../helpers/engine-process.js';
import { waitForHealth } from '../../helpers/health.js';
import { startTestNatsCluster, type TestNatsCluster } from '../../helpers/nats-cluster.js';
import { connectTest } from '../../helpers/nats-server.js';

/**
 * Issue 17's topology: 3 nats-servers clustered (the input stream, the
 * changelog, the snapshots, the buckets and the partition consumers all R3,
 * the partition mapping on every server) and 3 engines in cluster mode.
 * Under load, one after the other: a nats-server is SIGKILLed; an engine is
 * SIGKILLed; another is paused (SIGSTOP) past its lease TTL and resumed (the
 * zombie: its appends are refused, it commits and publishes nothing more and
 * stops). Producers publish with message ids and retry until acknowledged
 * (what a producer must do across a stream leader's death). Then every
 * member rebuilt from the changelogs alone equals the sum of its distinct
 * events, every event has one balance outcome, and every partition was owned
 * again within the lease TTL plus its restore.
 *
 * Not in the default run (about 4 minutes on the 2-core machine, most of it
 * lease TTLs, restores and three engines' starts: the suite's ten-minute
 * budget): CLUSTER_TEST_3=1 npx vitest run <this file>.
 * CLUSTER_TEST_EVENTS sets the events sent (a copy of every tenth sent too):
 * 8,000 by default, 200,000 for the issue's run.
 */
const RUN = process.env.CLUSTER_TEST_3 === '1';
const TTL_MS = 10_000; // above a JetStream leader election on 2.9.10 (~6 s): leases survive a server's death
const TICK_MS = 1_000;
const EVENTS = Number(process.env.CLUSTER_TEST_EVENTS ?? 8_000);
const PHASE = Math.ceil(EVENTS / 4);

let cluster: TestNatsCluster;
let nc: NatsConnection;
let rig: ClusterRig;

beforeAll(async () => {
  if (!RUN) return;
  cluster = await startTestNatsCluster(3, 'loyalty-engines', PARTITION_MAPPING);
  // The test's own connection to the server that stays up.
  nc = await connectTest(cluster.servers[0]!.url);
  rig = await ClusterRig.open(nc, { natsUrl: cluster.urls, leaseTtlMs: TTL_MS, tickMs: TICK_MS, replicas: 3 });
}, 60_000);

afterAll(async () => {
  await rig?.close();
  await nc?.close();
  await cluster?.stop();
});

describe.skipIf(!RUN)('3 engines on 3 clustered nats-servers', () => {
  it('lose a server, an engine and a zombie under load, and lose or double nothing', async () => {
    const started = Date.now();
    const [a, b, c] = (await Promise.all(['engine-a', 'engine-b', 'engine-c'].map((id) => rig.startInstance(id)))) as [Awaited<ReturnType<ClusterRig['startInstance']>>, Awaited<ReturnType<ClusterRig['startInstance']>>, Awaited<ReturnType<ClusterRig['startInstance']>>];
    const split = await rig.waitSplit([a, b, c], 120_000, (counts) => counts.every((count) => count >= 10));
    await rig.publishAcked(rig.batchOf('one', PHASE));

    // 1. A nats-server dies under load (the third: the test's connection is on the first). R3 keeps every stream.
    const serverLoad = rig.publishAcked(rig.batchOf('two', PHASE));
    await sleep(200);
    cluster.servers[2]!.kill();
    const serverKilledAt = Date.now();
    await serverLoad;
    await rig.waitDrained(180_000);
    const serverDrainedMs = Date.now() - serverKilledAt;
    const afterServer = await rig.waitSplit([a, b, c], 60_000, () => true);

    // 2. An engine dies under load (SIGKILL): the two others take its partitions after the lease TTL.
    const engineLoad = rig.publishAcked(rig.batchOf('three', PHASE));
    await sleep(200);
    await c.kill();
    const killedAt = Date.now();
    await rig.waitSplit([a, b], 120_000, (counts) => counts.every((count) => count > 0));
    const takeoverMs = Date.now() - killedAt;
    await engineLoad;
    await rig.waitDrained(180_000);

    // 3. A zombie: engine-b paused past its lease TTL under load. engine-a fences and restores its partitions; when
    // engine-b resumes, its appends are refused, so it commits and publishes nothing of what it held, and stops.
    const { takeoverMs: zombieTakeoverMs, exit: zombieExit } = await rig.zombie(b, a, () => rig.publishAcked(rig.batchOf('four', PHASE)), TICK_MS);
    await rig.waitDrained(180_000);
    expect(a.child.exitCode).toBeNull();
    expect(await a.stop()).toBe(0);
    console.log(
      `cluster engines on 3 servers, ${rig.sent.length} events (+ a copy of every tenth): split ${JSON.stringify(split)}; ` +
        `a server killed under load: drained ${serverDrainedMs} ms after, split ${JSON.stringify(afterServer)}; ` +
        `after SIGKILL of an engine all ${PARTITIONS} owned again in ${takeoverMs} ms; a zombie's all owned again ${zombieTakeoverMs} ms after SIGSTOP ` +
        `(then it ${zombieExit === null ? 'came back as a member' : `stopped with exit code ${zombieExit}`}); lease TTL ${TTL_MS} ms; ${Math.round((Date.now() - started) / 1000)} s in all`,
    );
    // Within the TTL plus restores; on this 2-core machine, loaded, a restore after a server's death takes seconds.
    expect(takeoverMs).toBeLessThan(TTL_MS + 50_000);
    expect(zombieTakeoverMs).toBeLessThan(TTL_MS + 50_000);
    await rig.verify();
  }, 900_000);
});
