import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AckPolicy, DeliverPolicy, DiscardPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/nats-core';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSettings } from '../../../src/config/settings.js';
import { partitionOf } from '../../../src/routing/partitioner.js';
import { assertDiskRoom, MDB_MAP_FULL, storeWriteError } from '../../../src/store/commit-errors.js';
import { LmdbStore } from '../../../src/store/lmdb.js';
import { HEADER_MESSAGE_ID } from '../../../src/transport/subjects.js';
import { ensureTopology } from '../../../src/transport/topology.js';
import { consumerProgress, sleep, startEngineProcess, tempDataDir, waitFor, waitForAckFloor, type EngineProcess } from '../../helpers/engine-process.js';
import { health } from '../../helpers/health.js';
import { checkLedgers, LMDB_TROUBLE, publishPurchases, purchases, type PurchaseLoadOptions } from '../../helpers/kill-loop.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from '../../helpers/nats-server.js';

/**
 * Issue 14, item 4: resources running out while the engine consumes.
 *
 * 1. The LMDB map smaller than the data. lmdb-js 3.5.6 grows the map itself
 *    (twice what a write needs) when a write needs pages beyond it, so
 *    LOYALTY_LMDB_MAP_SIZE_BYTES is where the map starts, not a limit: no
 *    MDB_MAP_FULL. The test holds the engine to that: at the smallest map the
 *    settings accept, the state grows well past it, every event is applied
 *    once, and a restart opens the larger file with the same small setting.
 *    (MDB_MAP_FULL would still get its message, ERR_STORE_MAP_FULL: checked
 *    on the mapping below.)
 * 2. The disk full: the data directory on a 30 MiB tmpfs. The commit that does
 *    not fit fails, the engine stops with exit code 1 and ERR_STORE_DISK_FULL
 *    (where, how much is free, what to do), it acked nothing it had not
 *    committed, a restart while the disk is still full stops the same way,
 *    and once the tmpfs is grown a restart applies everything exactly once.
 * 3. The outcome stream at its limit (max_msgs with discard new) mid-load: the
 *    engine keeps running, says in its log what is wrong and what to do, holds
 *    intake back once its outbox bound is reached; once the limit is raised
 *    every event has exactly one set of outcomes in the stream and every
 *    balance is exact.
 */
const PARTITIONS = 16;
const MIB = 1024 * 1024;
/** The smallest map LOYALTY_LMDB_MAP_SIZE_BYTES accepts. */
const MAP_SIZE_MIN = 64 * MIB;

interface Setup {
  server: TestNatsServer;
  nc: NatsConnection;
  jsm: JetStreamManager;
  lastSequence: number;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
});

async function setUp(load: PurchaseLoadOptions): Promise<Setup> {
  const server = await startTestNatsServer();
  cleanups.push(() => server.stop());
  const nc = await connectTest(server.url);
  cleanups.push(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await ensureTopology(jsm, loadSettings({}, { natsUrl: server.url, partitions: PARTITIONS }));
  const { lastSequence } = await publishPurchases(nc, load);
  return { server, nc, jsm, lastSequence };
}

async function start(setup: Setup, dataDir: string, env: Record<string, string> = {}): Promise<EngineProcess> {
  const engine = await startEngineProcess({ natsUrl: setup.server.url, dataDir, env: { LOYALTY_PARTITIONS: String(PARTITIONS), ...env }, readyTimeoutMs: 60_000 });
  cleanups.push(() => engine.kill());
  return engine;
}

/**
 * The stream sequence of each purchase's first copy: publishPurchases sends
 * them in order into a fresh stream, every `duplicateEvery`-th one twice.
 */
function firstSequences(load: PurchaseLoadOptions): Map<string, number> {
  const sequences = new Map<string, number>();
  let sequence = 0;
  let index = 0;
  for (const purchase of purchases(load)) {
    sequence += 1;
    sequences.set(purchase.id, sequence);
    if (load.duplicateEvery > 0 && index % load.duplicateEvery === 0) sequence += 1;
    index += 1;
  }
  return sequences;
}

/**
 * Read from the store after the engine stopped, without the engine: of the
 * events at or below the consumer's ack floor, how many have no idempotency
 * record (acked but not committed: must be 0), and how many events in all are
 * committed.
 */
async function ackedButNotCommitted(dataDir: string, load: PurchaseLoadOptions, ackFloor: number): Promise<{ ackedNotCommitted: number; committed: number }> {
  const sequences = firstSequences(load);
  const store = new LmdbStore({ dataDir, mapSizeBytes: 2 ** 30, partitions: PARTITIONS });
  let ackedNotCommitted = 0;
  let committed = 0;
  try {
    for (const purchase of purchases(load)) {
      const done = store.readProcessed(partitionOf(purchase.memberId, PARTITIONS), purchase.memberId, purchase.id) !== undefined;
      if (done) committed += 1;
      else if (sequences.get(purchase.id)! <= ackFloor) ackedNotCommitted += 1;
    }
  } finally {
    await store.close();
  }
  return { ackedNotCommitted, committed };
}

async function expectExact(dataDir: string, load: PurchaseLoadOptions): Promise<void> {
  const check = await checkLedgers(dataDir, load, PARTITIONS, 2 ** 30);
  expect(check.mismatches).toEqual([]);
  expect({ lost: check.lost, doubled: check.doubled, wrongBalances: check.wrongBalances, events: check.events }).toEqual({ lost: 0, doubled: 0, wrongBalances: 0, events: load.events });
}

function troubleIn(output: string): string[] {
  return output.split('\n').filter((line) => LMDB_TROUBLE.test(line));
}

/** Figures for the report (issue 14's table), on stdout. */
function report(name: string, figures: Record<string, unknown>): void {
  process.stdout.write(`[resources] ${name}: ${JSON.stringify(figures)}\n`);
}

describe('resources running out while the engine consumes', () => {
  it('LMDB map smaller than the data: lmdb-js grows the map, no MDB_MAP_FULL; every event applied once; the larger file reopens with the small setting', async () => {
    const load: PurchaseLoadOptions = { seed: 1441, events: 80_000, members: 8_000, duplicateEvery: 25 };
    const setup = await setUp(load);
    const data = tempDataDir('loyalty-map-');
    cleanups.push(() => data.remove());
    const env = { LOYALTY_LMDB_MAP_SIZE_BYTES: String(MAP_SIZE_MIN) };
    const startedAt = Date.now();
    const engine = await start(setup, data.path, env);
    await waitForAckFloor(setup.nc, setup.lastSequence, 90_000);
    const consumedMs = Date.now() - startedAt;
    const fileBytes = statSync(join(data.path, 'state', 'data.mdb')).size;
    expect(await engine.stop()).toBe(0);
    expect(troubleIn(engine.output())).toEqual([]);
    // Well past the map it was opened with: the map grew.
    expect(fileBytes).toBeGreaterThan(1.25 * MAP_SIZE_MIN);

    // The same small setting on a file larger than it: LMDB takes the file's size.
    const again = await start(setup, data.path, env);
    expect((await health(again.httpPort)).status).toBe(200);
    expect(await again.stop()).toBe(0);
    expect(troubleIn(again.output())).toEqual([]);
    await expectExact(data.path, load);
    report('map', { events: load.events, messages: setup.lastSequence, mapSizeBytes: MAP_SIZE_MIN, fileBytes, consumedMs, lost: 0, doubled: 0, crashes: 0 });
  }, 120_000);

  it('disk full (the data directory on a 30 MiB tmpfs): stops with ERR_STORE_DISK_FULL, acks nothing uncommitted, stops the same way while still full, resumes once there is room: every event applied once', async (context) => {
    // Mounted here, not at collection: a run that filters this test out must not leave a mount behind.
    if (process.getuid?.() !== 0) context.skip('not root: cannot mount a tmpfs for the data directory');
    const mountPoint = mkdtempSync(join(tmpdir(), 'loyalty-diskfull-'));
    cleanups.push(() => rmSync(mountPoint, { recursive: true, force: true }));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=30m', 'tmpfs', mountPoint], { stdio: 'pipe' });
    } catch (error) {
      context.skip(`mount -t tmpfs failed: ${(error as { stderr?: Buffer }).stderr?.toString().trim() ?? String(error)}`);
    }
    // Runs after the engines' cleanups (pushed later, run first): nothing holds the files any more.
    cleanups.push(() => {
      try {
        execFileSync('umount', [mountPoint], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', mountPoint], { stdio: 'pipe' }); // still busy: detach now, freed when the last file closes
      }
    });
    const load: PurchaseLoadOptions = { seed: 1442, events: 40_000, members: 4_000, duplicateEvery: 25 };
    const setup = await setUp(load);
    const dataDir = mountPoint;

    // The default map (64 GiB): the disk fills long before it.
    const engine = await start(setup, dataDir);
    const code = await Promise.race([engine.exited, sleep(60_000).then(() => 'still running')]);
    const output = engine.output();
    expect(code, output).toBe(1);
    expect(output).toMatch(/ERR_STORE_DISK_FULL/);
    expect(output).toContain(`disk full`);
    expect(output).toContain(join(dataDir, 'state'));
    expect(output).toMatch(/free space or grow the volume, then start the engine again/);
    expect(output).toMatch(/^error ERR_STORE_DISK_FULL: /m);
    expect(output).not.toMatch(/Emitted 'error' event|Uncaught|unhandled/i);
    const floorAtFailure = (await consumerProgress(setup.jsm)).ackFloor;
    expect(floorAtFailure).toBeLessThan(setup.lastSequence);

    // A supervisor restarting it before room is made: the same clean stop, and still no ack of anything uncommitted.
    let restartCode: number | null | string;
    let restartOutput: string;
    try {
      const restarted = await start(setup, dataDir);
      restartCode = await Promise.race([restarted.exited, sleep(60_000).then(() => 'still running')]);
      restartOutput = restarted.output();
    } catch (error) {
      restartCode = (error as { exitCode?: number | null }).exitCode ?? 'not ready';
      restartOutput = (error as Error).message;
    }
    // It refuses to start (less than 16 MiB free), before the store is opened: never a failed
    // assertion or a crash (lmdb-js could die of its free-list assertion committing on a full disk).
    expect(restartOutput).not.toMatch(/ERR_ASSERTION|Assertion|Uncaught|unhandled|SIGSEGV/i);
    expect(restartCode, restartOutput).toBe(1);
    expect(restartOutput).toMatch(/^error ERR_STORE_DISK_FULL: disk full under .*the engine needs at least 16\.0 MiB to start/m);
    const floorWhileFull = (await consumerProgress(setup.jsm)).ackFloor;

    // Room: the tmpfs grown in place (the files stay).
    execFileSync('mount', ['-o', 'remount,size=200m', mountPoint], { stdio: 'pipe' });
    const { ackedNotCommitted, committed } = await ackedButNotCommitted(dataDir, load, floorWhileFull);
    expect(ackedNotCommitted).toBe(0);
    expect(committed).toBeLessThan(load.events);

    // The first start after a commit cut short by the full disk once could die of lmdb-js 3.5.6's
    // free-list assertion (SIGABRT, "Freelist record not found … 'freelist_written_start >= mop_len'",
    // 2 in 6 runs under load); fixed by PATCH2 of scripts/lmdb-native.mjs. It must resume at once.
    const resumedAt = Date.now();
    const resumed = await start(setup, dataDir);
    const outcome = await Promise.race([waitForAckFloor(setup.nc, setup.lastSequence, 60_000).then(() => 'done' as const), resumed.exited.then(() => 'exited' as const)]);
    expect(outcome, resumed.output()).toBe('done');
    const resumeMs = Date.now() - resumedAt;
    expect(await resumed.stop()).toBe(0);
    expect(troubleIn(resumed.output())).toEqual([]);
    await expectExact(dataDir, load);
    const line = output.split('\n').find((text) => text.startsWith('error ERR_STORE_DISK_FULL'));
    report('disk full', { events: load.events, messages: setup.lastSequence, tmpfs: '30 MiB', floorAtFailure, floorWhileFull, committedAtFailure: committed, restartWhileFull: restartCode, resumeMs, lost: 0, doubled: 0, line });
  }, 150_000);

  it('outcome stream at its limit (max_msgs, discard new) mid-load: the engine says so and holds back; once raised, one set of outcomes per event and exact balances', async () => {
    const load: PurchaseLoadOptions = { seed: 1443, events: 40_000, members: 4_000, duplicateEvery: 25 };
    const setup = await setUp(load);
    const data = tempDataDir('loyalty-outcome-limit-');
    cleanups.push(() => data.remove());
    const outcomeStream = loadSettings({}).outcomeStreamName;
    // A small outbox bound (the default, 64 batches of up to 1,024 events per actor, outlasts this load): the hold is reached soon.
    const unconfirmedMax = 8;
    // A short ack wait, held well past: nats-server redelivers what the held actors have not acked meanwhile (as a long outage would).
    const ackWaitMs = 2_000;
    // Small batches: the ack floor lags the commits (it waits for PubAcks), so at 1,024 events per batch a slow
    // machine had committed nearly all the load when the limit came, and each actor had fewer than the bound's
    // batches left (CI at b6e87d0: 1 and 2 unconfirmed, never held). At 128, thousands of events left are dozens of batches.
    const batchSizeMax = 128;
    const engine = await start(setup, data.path, {
      LOYALTY_OUTCOME_BATCHES_UNCONFIRMED_MAX: String(unconfirmedMax),
      LOYALTY_ACK_WAIT_MS: String(ackWaitMs),
      LOYALTY_BATCH_SIZE_MAX: String(batchSizeMax),
    });
    // Mid-load.
    for (;;) {
      if ((await consumerProgress(setup.jsm)).ackFloor > setup.lastSequence / 20) break;
      await sleep(20);
    }
    const info = await setup.jsm.streams.info(outcomeStream);
    const limited = info.state.messages + 2_000;
    await setup.jsm.streams.update(outcomeStream, { ...info.config, max_msgs: limited, discard: DiscardPolicy.New });

    // The engine holds back: the ack floor stops short of the end, the engine runs, the log says why.
    await waitFor(() => /does not take outcomes/.test(engine.output()), 30_000, 'the warning that the outcome stream refuses');
    let floor = (await consumerProgress(setup.jsm)).ackFloor;
    for (let stillFor = 0; stillFor < 3_000; ) {
      await sleep(500);
      const next = (await consumerProgress(setup.jsm)).ackFloor;
      stillFor = next === floor ? stillFor + 500 : 0;
      floor = next;
    }
    expect(floor).toBeLessThan(setup.lastSequence);
    expect(engine.child.exitCode).toBeNull();
    const during = await health(engine.httpPort);
    const output = engine.output();
    expect(output).toMatch(new RegExp(`the outcome stream ${outcomeStream} does not take outcomes \\(the stream refused the publish: maximum messages exceeded`));
    expect(output).toMatch(/Make room in LOYALTY_OUTCOMES \(raise max_msgs/);
    expect(output).toMatch(/this actor takes no new events until the stream takes outcomes again/);
    expect((await setup.jsm.streams.info(outcomeStream)).state.messages).toBe(limited);
    const heldAt = Date.now();
    await sleep(3 * ackWaitMs);
    expect((await consumerProgress(setup.jsm)).ackFloor).toBe(floor);
    const redelivered = (await setup.jsm.consumers.info('LOYALTY_TX', 'loyalty-engine')).num_redelivered;

    // Room: the limit raised, as ensureTopology had it.
    const raisedAt = Date.now();
    const heldMs = raisedAt - heldAt;
    await setup.jsm.streams.update(outcomeStream, { ...info.config, max_msgs: -1, discard: DiscardPolicy.Old });
    await waitForAckFloor(setup.nc, setup.lastSequence, 60_000);
    const resumeMs = Date.now() - raisedAt;
    // Every actor's outbox caught up: the stream's count stays put (and each actor that was refused said it caught up).
    let total = -1;
    for (let stillFor = 0; stillFor < 2_000; ) {
      await sleep(250);
      const count = (await setup.jsm.streams.info(outcomeStream)).state.messages;
      stillFor = count === total ? stillFor + 250 : 0;
      total = count;
    }
    const refusedActors = new Set([...output.matchAll(/"actor":(\d+),"code":"ERR_STREAM_PUBLISH"/g)].map((match) => match[1]));
    await waitFor(() => [...refusedActors].every((actor) => new RegExp(`"actor":${actor},[^\n]*acknowledges every outcome again`).test(engine.output())), 30_000, 'every refused actor caught up');

    // Every event's outcomes, read back from the stream (sequence 1 to the last, no gap): one balance outcome with its points, indices 0..n-1, no message id twice.
    const expected = new Map<string, number>();
    for (const purchase of purchases(load)) expected.set(`${purchase.memberId}:${purchase.id}`, purchase.points);
    const seen = new Map<string, { indices: number[]; balanceDeltas: number[] }>();
    let messages = 0;
    let idsTwice = 0;
    let gaps = 0;
    const ids = new Set<string>();
    const reader = await setup.jsm.consumers.add(outcomeStream, { ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, inactive_threshold: nanos(60_000) });
    const consumer = await jetstream(setup.nc).consumers.get(outcomeStream, reader.name);
    while (messages < total) {
      const batch = await consumer.fetch({ max_messages: 4_096, expires: 2_000 });
      let got = 0;
      for await (const message of batch) {
        got += 1;
        messages += 1;
        if (message.info.streamSequence !== messages) gaps += 1;
        const id = message.headers?.get(HEADER_MESSAGE_ID) ?? '';
        if (ids.has(id)) idsTwice += 1;
        ids.add(id);
        const cut = id.lastIndexOf(':');
        const eventKey = id.slice(0, cut);
        const entry = seen.get(eventKey) ?? { indices: [], balanceDeltas: [] };
        entry.indices.push(Number(id.slice(cut + 1)));
        const outcome = message.json<{ kind: string; delta?: number }>();
        if (outcome.kind === 'balance') entry.balanceDeltas.push(outcome.delta ?? Number.NaN);
        seen.set(eventKey, entry);
      }
      if (got === 0) break;
    }
    await setup.jsm.consumers.delete(outcomeStream, reader.name);
    expect({ messages, gaps }).toEqual({ messages: total, gaps: 0 });
    expect(idsTwice).toBe(0);
    const wrong: string[] = [];
    for (const [eventKey, points] of expected) {
      const entry = seen.get(eventKey);
      const indices = (entry?.indices ?? []).sort((a, b) => a - b);
      const contiguous = indices.length > 0 && indices.every((index, position) => index === position);
      if (!contiguous || entry!.balanceDeltas.length !== 1 || entry!.balanceDeltas[0] !== points) {
        if (wrong.length < 10) wrong.push(`${eventKey}: indices ${JSON.stringify(indices)}, balance deltas ${JSON.stringify(entry?.balanceDeltas)}, expected ${points}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(seen.size).toBe(expected.size);

    expect(await engine.stop()).toBe(0);
    expect(troubleIn(engine.output())).toEqual([]);
    await expectExact(data.path, load);
    report('outcome stream', { events: load.events, messages: setup.lastSequence, limitMsgs: limited, floorWhileHeld: floor, healthWhileHeld: during.status, heldMs, redelivered, resumeMs, outcomeMessages: messages, idsTwice, lost: 0, doubled: 0 });
  }, 150_000);

  it('MDB_MAP_FULL, ENOSPC and a short write on a full disk each get a message that says what to do', () => {
    const context = { path: '/data/state', mapSizeBytes: MAP_SIZE_MIN, freeBytes: () => 0 };
    const mapFull = storeWriteError(Object.assign(new Error('MDB_MAP_FULL: Environment mapsize limit reached'), { code: MDB_MAP_FULL }), context);
    expect(mapFull.code).toBe('ERR_STORE_MAP_FULL');
    expect(mapFull.message).toMatch(/LMDB map is full \(MDB_MAP_FULL\) at \/data\/state: raise LOYALTY_LMDB_MAP_SIZE_BYTES \(now 67108864 bytes\)/);
    const noSpace = storeWriteError(Object.assign(new Error('No space left on device'), { code: 28 }), context);
    expect(noSpace.code).toBe('ERR_STORE_DISK_FULL');
    expect(noSpace.message).toMatch(/^disk full \(ENOSPC\) under \/data\/state, 0 bytes free: free space or grow the volume/);
    const shortWrite = storeWriteError(Object.assign(new Error('Input/output error'), { code: 5 }), context);
    expect(shortWrite.code).toBe('ERR_STORE_DISK_FULL');
    expect(shortWrite.message).toMatch(/^disk full \(EIO from a short write\)/);
    const io = storeWriteError(Object.assign(new Error('Input/output error'), { code: 5 }), { ...context, freeBytes: () => 10 * 1024 ** 3 });
    expect(io.code).toBe('ERR_STORE_IO');
    expect(io.message).toMatch(/LMDB write failed at \/data\/state: Input\/output error \(code 5\), 10240\.0 MiB free; check the disk/);
    // A start on a disk with less than 16 MiB free is refused before the store is opened.
    expect(() => assertDiskRoom('/data', () => 5 * 1024 * 1024)).toThrow(/^disk full under \/data: 5\.0 MiB free, the engine needs at least 16\.0 MiB to start: free space or grow the volume/);
    expect(() => assertDiskRoom('/data', () => 5 * 1024 * 1024)).toThrow(expect.objectContaining({ code: 'ERR_STORE_DISK_FULL' }));
    expect(() => assertDiskRoom('/data', () => 16 * 1024 * 1024)).not.toThrow();
    expect(() => assertDiskRoom('/data', () => undefined)).not.toThrow();
  });
});
