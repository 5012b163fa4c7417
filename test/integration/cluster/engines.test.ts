import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WalletRouter } from '../../../src/cluster/wallet-routing.js';
import { ClusterRig, PARTITION_MAPPING, PARTITIONS } from '../../helpers/cluster-engines.js';
import { sleep } from '../../helpers/engine-process.js';
import { waitForHealth } from '../../helpers/health.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Cluster mode of `loyalty start` end to end (issue 17, docs/cluster.md):
 * engines as real processes on one nats-server whose mapping routes
 * `loyalty.tx.<member>` to `loyalty.txp.<partition>.<member>`. One engine
 * owns all 64 partitions; a second joins under load and takes its share with
 * the state (fence, restore from the changelog, consumer after the published
 * watermark); the first is paused past its lease TTL (a zombie) and resumed;
 * it starts again on its old data directory and rejoins; the second is
 * SIGKILLed under load and the first takes its partitions after the TTL.
 * Then every member's balance and ledger, rebuilt from the changelogs alone,
 * equal the sum of its distinct events, and each event has one set of outcomes.
 * (engines-nats-cluster.test.ts: 3 engines on 3 clustered servers, one killed.)
 */
const TTL_MS = 3_000;
const TICK_MS = 500;

let server: TestNatsServer;
let nc: NatsConnection;
let rig: ClusterRig;

beforeAll(async () => {
  server = await startTestNatsServer({ extraConfig: PARTITION_MAPPING });
  nc = await connectTest(server.url);
  rig = await ClusterRig.open(nc, { natsUrl: server.url, leaseTtlMs: TTL_MS, tickMs: TICK_MS, replicas: 1 });
}, 30_000);

afterAll(async () => {
  await rig?.close();
  await nc?.close();
  await server?.stop();
});

describe('loyalty start in cluster mode', () => {
  it('shares the partitions, moves them with their state on join, on a zombie and on a crash, and loses or doubles nothing', async () => {
    let a = await rig.startInstance('engine-a');
    await waitForHealth(a.httpPort, (answer) => answer.body?.partitionsConsuming === PARTITIONS, 90_000, 'engine-a consuming every partition');
    await rig.publishCore(rig.batchOf('one', 1_000));
    await rig.waitDrained(90_000);

    // 1. A second instance joins while events arrive: about half of the partitions move to it, state and all.
    const joining = rig.startInstance('engine-b');
    await rig.publishCore(rig.batchOf('two', 1_000));
    const b = await joining;
    const joined = await rig.waitSplit([a, b], 60_000, (split) => split.every((count) => count > 0));
    expect(joined[1]).toBeGreaterThanOrEqual(20);
    expect(joined[1]).toBeLessThanOrEqual(44);
    await rig.waitDrained(90_000);

    // Wallet reads go to the partition's owner (<prefix>.svc.wallet.p<N>): each member answered by the instance
    // that consumes its partition, nobody else, with its balance so far.
    const router = new WalletRouter(nc, { partitions: PARTITIONS, handoverWaitMs: 5_000 });
    const servedBy = new Map<string, number>();
    for (const [memberId, sum] of rig.expectedBalances()) {
      const reply = await router.walletReply(memberId);
      const wallet = JSON.parse(reply.json) as { currencies: { currency: string; spendable: number }[] };
      expect(wallet.currencies.find((currency) => currency.currency === 'points')?.spendable, memberId).toBe(sum);
      servedBy.set(reply.servedBy ?? '', (servedBy.get(reply.servedBy ?? '') ?? 0) + 1);
    }
    expect([...servedBy.keys()].sort()).toEqual(['engine-a', 'engine-b']);

    // 2. A zombie: engine-a paused (SIGSTOP) past its lease TTL while events arrive. engine-b takes its partitions
    // (fencing each changelog); when engine-a resumes, its appends are refused, so it commits and publishes nothing
    // of what it still held, and it either stops (a refused commit stops an engine: crash-only) or comes back as a
    // member that owns nothing until the next rebalance.
    const { takeoverMs: zombieTakeoverMs, exit: zombieExit } = await rig.zombie(a, b, () => rig.publishCore(rig.batchOf('three', 1_000)), TICK_MS);
    await rig.waitDrained(90_000);

    // 3. engine-a starts again on its old data directory (stale members of the partitions it held): it joins under
    // load and restores what it takes from the changelogs, whatever its own store held.
    const restarting = rig.startInstance('engine-a', rig.indexOf(a));
    await rig.publishCore(rig.batchOf('four', 1_000));
    a = await restarting;
    await rig.waitSplit([a, b], 60_000, (split) => split.every((count) => count > 0));
    await rig.waitDrained(90_000);

    // 4. engine-b dies under load (SIGKILL): its partitions are free after the lease TTL and engine-a restores them.
    const load = rig.publishCore(rig.batchOf('five', 1_000));
    await sleep(300);
    await b.kill();
    const killedAt = Date.now();
    await load;
    await waitForHealth(a.httpPort, (answer) => answer.body?.partitionsConsuming === PARTITIONS, 60_000, 'engine-a consuming every partition');
    const takeoverMs = Date.now() - killedAt;
    await rig.waitDrained(90_000);
    expect(a.child.exitCode).toBeNull();
    expect(await a.stop()).toBe(0);
    // The figures the issue asks for: every partition owned again within TTL + restore time.
    console.log(
      `cluster engines: ${joined[1]} of ${PARTITIONS} partitions moved on join; a zombie's partitions all owned again ${zombieTakeoverMs} ms after SIGSTOP ` +
        `(then it ${zombieExit === null ? 'came back as a member' : `stopped with exit code ${zombieExit}`}); after SIGKILL all ${PARTITIONS} owned again in ${takeoverMs} ms (lease TTL ${TTL_MS} ms)`,
    );
    expect(zombieTakeoverMs).toBeLessThan(TTL_MS + 20_000);
    expect(takeoverMs).toBeLessThan(TTL_MS + 20_000);
    await rig.verify();
  }, 480_000);
});
