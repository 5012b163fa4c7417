import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../../src/config/settings.js';
import { ensureTopology } from '../../../src/transport/topology.js';
import { startCpuHog, type CpuHog } from '../../helpers/cpu-hog.js';
import { tempDataDir } from '../../helpers/engine-process.js';
import { checkLedgers, killLoop, prng, publishPurchases, type PurchaseLoadOptions } from '../../helpers/kill-loop.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Issue 14, item 1, the CI version: purchases consumed by an engine that is
 * SIGKILLed at random moments 5 times (FAULT_TEST_KILLS; issue 14 asks for >= 5 in CI), with a process spinning on one of the
 * two cores beside it. Then every member's balance and ledger must equal the
 * load's own sums: nothing lost, nothing counted twice, no LMDB error in any
 * run, and every start opened the database. The long version (>= 1,000,000
 * events, >= 20 kills) is scripts/fault-soak.ts.
 */
/** 5 in the default suite, the least issue 14 asks of CI; FAULT_TEST_KILLS and FAULT_TEST_EVENTS run it longer (the soak: scripts/fault-soak.ts). */
const KILLS = Number(process.env.FAULT_TEST_KILLS ?? 5);
const EVENTS = Number(process.env.FAULT_TEST_EVENTS ?? 40_000);
const PARTITIONS = 64;

/*
 * In the default suite again: the MDB_BAD_TXN "reserved freelist had a data entry with zero-size" a
 * CI run saw on the first commit after a restart (3 December 2026) came from lmdb-js's mdb_freelist_save
 * reading an uninitialised size; `npm install` now builds lmdb-js with that fixed
 * (scripts/lmdb-native.mjs; docs/operations.md, "Crash recovery").
 */
describe('kill -9 of the engine while consuming, beside a CPU hog', () => {
  let server: TestNatsServer;
  let nc: NatsConnection;
  let hog: CpuHog | undefined;
  const data = tempDataDir('loyalty-kill9-');
  // Fixed, so every CI run kills at the same moments of the load; FAULT_TEST_SEED tries others (printed).
  const seed = Number(process.env.FAULT_TEST_SEED ?? 14_001);

  beforeAll(async () => {
    server = await startTestNatsServer();
    nc = await connectTest(server.url);
  });

  afterAll(async () => {
    await hog?.stop();
    await nc?.close();
    await server?.stop();
    data.remove();
  });

  it(`keeps every balance and ledger exact through ${KILLS} SIGKILLs (seed ${seed})`, async () => {
    const random = prng(seed);
    const settings = loadSettings({}, { natsUrl: server.url, partitions: PARTITIONS });
    await ensureTopology(await jetstreamManager(nc), settings);
    const load: PurchaseLoadOptions = { seed, events: EVENTS, members: EVENTS / 10, duplicateEvery: 25 };
    const { lastSequence, published } = await publishPurchases(nc, load);
    expect(published).toBe(load.events + Math.ceil(load.events / load.duplicateEvery));

    hog = startCpuHog(1);
    const report = await killLoop({
      natsUrl: server.url,
      dataDir: data.path,
      env: { LOYALTY_PARTITIONS: String(PARTITIONS) },
      kills: KILLS,
      random,
      lastSequence,
      nc,
      runMsMin: 0,
      runMsMax: 1_500,
      finishTimeoutMs: 240_000,
      log: (line) => console.log(line),
    });
    await hog.stop();
    hog = undefined;

    expect(report.lmdbErrors).toEqual([]);
    expect(report.crashes).toBe(0);
    expect(report.kills).toBe(KILLS);
    expect(report.starts).toBe(KILLS + 1);
    expect(report.finalExitCode).toBe(0);

    const check = await checkLedgers(data.path, load, PARTITIONS, settings.lmdbMapSizeBytes);
    console.log(`kill -9 x${report.kills}: ${check.events} events, ${check.members} members, lost ${check.lost}, doubled ${check.doubled}, slowest start ${report.startMsMax} ms`);
    expect(check.mismatches).toEqual([]);
    expect({ lost: check.lost, doubled: check.doubled, wrongBalances: check.wrongBalances }).toEqual({ lost: 0, doubled: 0, wrongBalances: 0 });
    expect(check.events).toBe(load.events);
  }, 420_000);
});
