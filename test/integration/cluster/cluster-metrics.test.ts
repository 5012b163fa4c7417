import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterRig, PARTITION_MAPPING, PARTITIONS } from '../../helpers/cluster-engines.js';
import { sleep, startEngineProcess, tempDataDir, type EngineProcess } from '../../helpers/engine-process.js';
import { health, waitForHealth } from '../../helpers/health.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * The cluster metrics of `loyalty start` (src/metrics/cluster-metrics.ts) as
 * an SRE scrapes them: two engine processes on one nats-server. The first
 * owns every partition, takes snapshots (thresholds lowered) while events
 * drain; the second joins and takes its share. At each step every instance's
 * loyalty_cluster_partitions_owned equals the partitions its /health says it
 * consumes, the two add up to 64, and the counters tell the same story: what
 * the joiner acquired (and restored) the first released.
 */
const TTL_MS = 3_000;
const TICK_MS = 500;

let server: TestNatsServer;
let nc: NatsConnection;
let rig: ClusterRig;
const engines: EngineProcess[] = [];
const dirs: { remove(): void }[] = [];

beforeAll(async () => {
  server = await startTestNatsServer({ extraConfig: PARTITION_MAPPING });
  nc = await connectTest(server.url);
  rig = await ClusterRig.open(nc, { natsUrl: server.url, leaseTtlMs: TTL_MS, tickMs: TICK_MS, replicas: 1 });
}, 30_000);

afterAll(async () => {
  for (const engine of engines) if (engine.child.exitCode === null) await engine.kill();
  for (const dir of dirs) dir.remove();
  await rig?.close();
  await nc?.close();
  await server?.stop();
});

/** As ClusterRig.startInstance, with snapshots after a few records so that some are taken in a short test. */
async function start(instanceId: string): Promise<EngineProcess> {
  const dir = tempDataDir(`loyalty-metrics-${instanceId}-`);
  dirs.push(dir);
  const engine = await startEngineProcess({
    natsUrl: server.url,
    dataDir: dir.path,
    readyTimeoutMs: 60_000,
    env: {
      LOYALTY_CLUSTER: 'true',
      LOYALTY_INSTANCE_ID: instanceId,
      LOYALTY_CLUSTER_LEASE_TTL_MS: String(TTL_MS),
      LOYALTY_CLUSTER_TICK_MS: String(TICK_MS),
      LOYALTY_CLUSTER_REPLICAS: '1',
      LOYALTY_ACTORS: '1',
      LOYALTY_SNAPSHOT_RECORDS_MIN: '3',
      LOYALTY_SNAPSHOT_INTERVAL_MS_MIN: '0',
      LOYALTY_LOG_LEVEL: 'warn',
      LOYALTY_EMBEDDED_NATS_AUTO_INSTALL: 'false',
    },
  });
  engines.push(engine);
  return engine;
}

/** Every sample of the scrape, by `name{labels}` as written (labels in prom-client's order). */
async function scrape(engine: EngineProcess): Promise<Map<string, number>> {
  const response = await fetch(`http://127.0.0.1:${engine.httpPort}/metrics`);
  expect(response.status).toBe(200);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

const sum = (samples: Map<string, number>, prefix: string) => [...samples].filter(([key]) => key === prefix || key.startsWith(`${prefix}{`)).reduce((total, [, value]) => total + value, 0);

interface Standing {
  readonly consuming: number;
  readonly samples: Map<string, number>;
}

/** Scrapes until /metrics and /health agree on the owned count (a partition may change hands between the two reads). */
async function standing(engine: EngineProcess): Promise<Standing> {
  for (let attempt = 0; ; attempt++) {
    const before = Number((await health(engine.httpPort)).body?.partitionsConsuming ?? -1);
    const samples = await scrape(engine);
    const after = Number((await health(engine.httpPort)).body?.partitionsConsuming ?? -1);
    if (before === after || attempt >= 20) return { consuming: after, samples };
    await sleep(100);
  }
}

describe('cluster metrics at /metrics', () => {
  it('shows each instance owning what it consumes, with the takeovers, restores, releases and snapshots behind it', async () => {
    const t0 = performance.now();
    const mark = (what: string) => process.stdout.write(`[cluster metrics] ${what} at ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    const a = await start('metrics-a');
    mark('a ready');
    await waitForHealth(a.httpPort, (answer) => answer.body?.partitionsConsuming === PARTITIONS, 30_000, 'metrics-a consuming every partition');
    mark('a owns all');
    const alone = await standing(a);
    expect(alone.consuming).toBe(PARTITIONS);
    expect(alone.samples.get('loyalty_cluster_partitions_owned')).toBe(PARTITIONS);
    expect(alone.samples.get('loyalty_cluster_partitions_restoring')).toBe(0);
    expect(alone.samples.get('loyalty_cluster_leases_held')).toBe(PARTITIONS);
    expect(alone.samples.get('loyalty_cluster_partition_acquisitions_total')).toBe(PARTITIONS);
    expect(sum(alone.samples, 'loyalty_cluster_restores_total')).toBe(PARTITIONS);
    expect(alone.samples.get('loyalty_cluster_restore_duration_seconds_count')).toBe(PARTITIONS);
    expect(alone.samples.get('loyalty_cluster_partition_releases_total')).toBe(0);
    expect(alone.samples.get('loyalty_cluster_fenced_appends_total')).toBe(0);

    // Events over every partition in 4 rounds, each drained before the next: a round's batches append at least one
    // record to nearly every partition, so nearly every partition passes 3 records and is snapshotted by metrics-a.
    for (let round = 0; round < 4; round++) {
      await rig.publishCore(rig.batchOf(`metrics-${round}`, 250));
      await rig.waitDrained(30_000);
    }
    mark('drained');
    let snapshots = 0;
    for (let waited = 0; waited < 10_000 && snapshots === 0; waited += 200) {
      snapshots = (await scrape(a)).get('loyalty_cluster_snapshots_total') ?? 0;
      if (snapshots === 0) await sleep(200);
    }
    const afterLoad = await scrape(a);
    expect(snapshots).toBeGreaterThan(0);
    await sleep(1_000); // the snapshots still queued (one at a time per actor)
    // A snapshot of a partition with members is some KB at least.
    expect(afterLoad.get('loyalty_cluster_snapshot_bytes_total')!).toBeGreaterThan(1_000 * afterLoad.get('loyalty_cluster_snapshots_total')!);
    // Renewals, timed on the ownership thread: a round per tick has renewed every lease held since the start.
    expect(afterLoad.get('loyalty_cluster_lease_renewal_duration_seconds_count')!).toBeGreaterThan(0);

    // A second instance joins and takes its share.
    mark('snapshots seen');
    const b = await start('metrics-b');
    mark('b ready');
    await rig.waitSplit([a, b], 30_000, (split) => split.every((count) => count > 0));
    mark('split');
    const [atA, atB] = [await standing(a), await standing(b)];
    for (const one of [atA, atB]) {
      expect(one.samples.get('loyalty_cluster_partitions_owned')).toBe(one.consuming);
      expect(one.samples.get('loyalty_cluster_fenced_appends_total')).toBe(0);
    }
    expect(atA.consuming + atB.consuming).toBe(PARTITIONS);
    // What moved: acquired and restored by b (snapshot + tail, for partitions a snapshotted), released by a.
    const moved = atB.consuming;
    expect(atB.samples.get('loyalty_cluster_partition_acquisitions_total')).toBe(moved);
    expect(atB.samples.get('loyalty_cluster_restores_total{source="snapshot"}')!).toBeGreaterThan(0);
    expect(atA.samples.get('loyalty_cluster_partition_releases_total')).toBe(moved);
    expect(atA.samples.get('loyalty_cluster_partition_acquisitions_total')).toBe(PARTITIONS);
    expect(atA.samples.get('loyalty_cluster_leases_held')).toBe(atA.consuming);
    expect(sum(atA.samples, 'loyalty_cluster_partition_losses_total')).toBe(0);
    process.stdout.write(
      `[cluster metrics] split ${atA.consuming}/${atB.consuming}; a: ${snapshots} snapshots, ${afterLoad.get('loyalty_cluster_snapshot_bytes_total')} bytes; ` +
        `b restored ${atB.samples.get('loyalty_cluster_restore_records_replayed_sum')} records in ${atB.samples.get('loyalty_cluster_restore_duration_seconds_sum')?.toFixed(2)} s (all ${moved} partitions, summed); ` +
        `renewals timed: ${atA.samples.get('loyalty_cluster_lease_renewal_duration_seconds_count')}\n`,
    );
  }, 150_000); // 38-56 s measured at a load average of 10-17 on 2 cores, about half of it the two processes' starts
});
