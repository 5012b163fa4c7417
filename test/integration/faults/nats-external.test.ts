import { rm } from 'node:fs/promises';
import { AckPolicy, DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSettings } from '../../../src/config/settings.js';
import { ensureTopology } from '../../../src/transport/topology.js';
import { consumerProgress, sleep, startEngineProcess, tempDataDir, waitFor, waitForAckFloor, type EngineProcess } from '../../helpers/engine-process.js';
import { waitForHealth } from '../../helpers/health.js';
import { checkLedgers, publishPurchases, type PurchaseLoadOptions } from '../../helpers/kill-loop.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Issue 14, item 2, an external nats-server (LOYALTY_NATS_URL set): killed
 * with SIGKILL and started again on the same port and store, or frozen with
 * SIGSTOP and thawed with SIGCONT, while the engine consumes. The engine
 * reconnects, /health says what is happening while it lasts, the consumer
 * resumes at its ack floor, and every balance and ledger is exact afterwards.
 */
const PARTITIONS = 16;
const load = (seed: number): PurchaseLoadOptions => ({ seed, events: 24_000, members: 2_400, duplicateEvery: 25 });

describe('external nats-server faults while the engine consumes', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  async function setUp(seed: number, env: Record<string, string> = {}): Promise<{ server: TestNatsServer; nc: NatsConnection; engine: EngineProcess; lastSequence: number; dataDir: string; storeDir: string }> {
    const server = await startTestNatsServer();
    const storeDir = server.storeDir;
    const nc = await connectTest(server.url);
    const data = tempDataDir('loyalty-nats-fault-');
    cleanups.push(async () => data.remove());
    cleanups.push(() => rm(storeDir, { recursive: true, force: true }));
    cleanups.push(() => nc.close());
    const settings = loadSettings({}, { natsUrl: server.url, partitions: PARTITIONS });
    await ensureTopology(await jetstreamManager(nc), settings);
    const { lastSequence } = await publishPurchases(nc, load(seed));
    const engine = await startEngineProcess({ natsUrl: server.url, dataDir: data.path, env: { LOYALTY_PARTITIONS: String(PARTITIONS), ...env } });
    cleanups.push(async () => void (await engine.kill()));
    // Mid-load: the engine has acked some, far from all.
    const jsm = await jetstreamManager(nc);
    for (;;) {
      const progress = await consumerProgress(jsm);
      if (progress.ackFloor > lastSequence / 10) break;
      await sleep(20);
    }
    return { server, nc, engine, lastSequence, dataDir: data.path, storeDir };
  }

  async function finish(nc: NatsConnection, engine: EngineProcess, lastSequence: number, dataDir: string, seed: number): Promise<void> {
    // After a restart on its store, nats-server can hold ack-pending entries below its ack floor,
    // which no ack clears; the engine recreates its consumer then (src/transport/below-floor.ts).
    // Nothing may stay pending at the end.
    await waitForAckFloor(nc, lastSequence, 150_000);
    const resets = (engine.output().match(/consumer recreated at its ack floor/g) ?? []).length;
    if (resets > 0) process.stdout.write(`[nats external] ${expect.getState().currentTestName}: the engine recreated its consumer ${resets} time(s) (entries pending below the ack floor)\n`);
    expect(await engine.stop()).toBe(0);
    expect(engine.output()).not.toMatch(/MDB_|failed to commit/);
    const check = await checkLedgers(dataDir, load(seed), PARTITIONS, 2 ** 30);
    expect(check.mismatches).toEqual([]);
    expect({ lost: check.lost, doubled: check.doubled, wrongBalances: check.wrongBalances, events: check.events }).toEqual({ lost: 0, doubled: 0, wrongBalances: 0, events: load(seed).events });
  }

  it('SIGKILL of nats-server, restarted on the same port and store: reconnects and loses nothing', async () => {
    const seed = 1401;
    const { server, nc, engine, lastSequence, dataDir, storeDir } = await setUp(seed);
    server.kill();
    const down = await waitForHealth(engine.httpPort, (answer) => answer.status === 503, 10_000, 'NATS down');
    expect(JSON.stringify(down.body)).toMatch(/nats/i);
    await sleep(1_000);
    const again = await startTestNatsServer({ storeDir, port: server.port });
    cleanups.push(() => again.stop());
    await waitForHealth(engine.httpPort, (answer) => answer.status === 200, 30_000, 'NATS back');
    await finish(nc, engine, lastSequence, dataDir, seed);
  }, 200_000);

  it('SIGSTOP then SIGCONT of nats-server: /health says it does not answer, then the engine carries on', async () => {
    const seed = 1402;
    const { server, nc, engine, lastSequence, dataDir } = await setUp(seed);
    cleanups.push(() => server.stop());
    process.kill(server.pid, 'SIGSTOP');
    try {
      const frozen = await waitForHealth(engine.httpPort, (answer) => answer.status === 503, 15_000, 'NATS not answering');
      expect(JSON.stringify(frozen.body)).toMatch(/nats/i);
      await sleep(3_000);
    } finally {
      process.kill(server.pid, 'SIGCONT');
    }
    await waitForHealth(engine.httpPort, (answer) => answer.status === 200, 30_000, 'NATS answering again');
    await finish(nc, engine, lastSequence, dataDir, seed);
  }, 150_000);

  it('ack-pending entries below the ack floor (what a restarted nats-server can leave): the engine finds them and recreates its consumer; nothing stays pending, nothing lost or doubled', async () => {
    // The state a restarted nats-server whose consumer state lagged leaves, made on purpose while
    // the engine is frozen mid-load: the consumer's delivery pointer 5,000 messages behind its ack
    // floor (recreated further back, then an ack-all for the floor: nats-server 2.9 takes the
    // sequence in the ack subject as it is). Everything up to the floor was committed by the
    // engine; what the server delivers next lies below its floor, pending for good.
    const seed = 1403;
    const { nc, engine, lastSequence, dataDir } = await setUp(seed);
    const jsm = await jetstreamManager(nc);
    for (;;) {
      if ((await consumerProgress(jsm)).ackFloor > lastSequence / 2) break;
      await sleep(20);
    }
    process.kill(engine.child.pid!, 'SIGSTOP');
    let floor: number;
    try {
      const info = await jsm.consumers.info('LOYALTY_TX', 'loyalty-engine');
      floor = Math.max(info.ack_floor.stream_seq, (info.config.opt_start_seq ?? 1) - 1);
      const rewound = floor - 5_000;
      expect(rewound).toBeGreaterThan(0);
      await jsm.consumers.delete('LOYALTY_TX', 'loyalty-engine');
      await jsm.consumers.add('LOYALTY_TX', {
        durable_name: 'loyalty-engine',
        ack_policy: AckPolicy.All,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: rewound,
        max_ack_pending: info.config.max_ack_pending,
        ack_wait: info.config.ack_wait,
        max_deliver: -1,
      });
      nc.publish(`$JS.ACK.LOYALTY_TX.loyalty-engine.1.${floor}.1.${Date.now() * 1_000_000}.0`, '+ACK');
      await nc.flush();
      // The server applies an ack on the consumer's own loop, after the flush has returned: wait
      // (bounded) until the info shows it rather than read it once.
      let lagging = await jsm.consumers.info('LOYALTY_TX', 'loyalty-engine');
      for (let attempt = 0; attempt < 100 && lagging.ack_floor.stream_seq !== floor; attempt++) {
        await sleep(50);
        lagging = await jsm.consumers.info('LOYALTY_TX', 'loyalty-engine');
      }
      expect({ ackFloor: lagging.ack_floor.stream_seq, delivered: lagging.delivered.stream_seq }).toEqual({ ackFloor: floor, delivered: rewound - 1 });
    } finally {
      process.kill(engine.child.pid!, 'SIGCONT');
    }
    await waitForAckFloor(nc, lastSequence, 120_000);
    // The new consumer may show the floor at the end before the engine has logged it.
    await waitFor(() => /consumer recreated at its ack floor/.test(engine.output()), 10_000, 'the engine to log the new consumer');
    const output = engine.output();
    expect(output).toMatch(/ack-pending entries below its ack floor/);
    const metrics = await (await fetch(`http://127.0.0.1:${engine.httpPort}/metrics`)).text();
    expect(Number(/^loyalty_consumer_resets_total (\d+)/m.exec(metrics)?.[1] ?? 0)).toBeGreaterThanOrEqual(1);
    const tookMs = [...output.matchAll(/"tookMs":(\d+)[^\n]*consumer recreated at its ack floor/g)].map((match) => Number(match[1]));
    process.stdout.write(`[nats external] delivery pointer 5,000 behind the floor ${floor}: the engine recreated its consumer ${tookMs.length} time(s), in ${tookMs.join(', ')} ms\n`);
    await finish(nc, engine, lastSequence, dataDir, seed);
  }, 150_000);
});
