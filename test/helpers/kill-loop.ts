import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { partitionOf } from '../../src/routing/partitioner.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import { consumerProgress, sleep, startEngineProcess, waitForAckFloor, type EngineProcess } from './engine-process.js';
import { memberView } from './member-view.js';

/**
 * The pieces of the kill -9 fault runs (test/integration/faults/kill-9.test.ts
 * in CI, scripts/fault-soak.ts for the long run): a seeded purchase load whose
 * points are known without the engine, a loop that starts and SIGKILLs the
 * engine at random moments, and a check of every member's balance and ledger
 * against the load's own sums.
 */

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Purchase {
  readonly id: string;
  readonly memberId: string;
  readonly amountMinor: number;
  /** What config/programs/simple.yaml gives: 1 point per 100 cents, floor (never 0 here). */
  readonly points: number;
}

export interface PurchaseLoadOptions {
  readonly seed: number;
  readonly events: number;
  readonly members: number;
  /** Every n-th event is published twice (a producer re-send); 0: none. */
  readonly duplicateEvery: number;
}

/** The load, regenerated from its seed whenever it is walked (a million events need not stay in memory). */
export function* purchases(options: PurchaseLoadOptions): Generator<Purchase> {
  const random = prng(options.seed);
  for (let index = 0; index < options.events; index++) {
    const memberId = `m-${Math.floor(random() * options.members)}`;
    // At least 100 cents: every purchase earns at least one point, so every event shows in the ledger.
    const amountMinor = 100 + Math.floor(random() * 100_000);
    yield { id: `order-${index}`, memberId, amountMinor, points: Math.floor(amountMinor / 100) };
  }
}

const encoder = new TextEncoder();

export function purchasePayload(purchase: Purchase): Uint8Array {
  return encoder.encode(
    JSON.stringify({ id: purchase.id, memberId: purchase.memberId, type: 'purchase', occurredAt: '2026-11-23T10:00:00.000Z', amountMinor: purchase.amountMinor, currency: 'EUR' }),
  );
}

/** Publishes the load (core NATS, flushed in rounds) and waits until the stream holds all of it; returns the last sequence. */
export async function publishPurchases(nc: NatsConnection, options: PurchaseLoadOptions, stream = 'LOYALTY_TX'): Promise<{ lastSequence: number; published: number }> {
  const jsm = await jetstreamManager(nc);
  const before = (await jsm.streams.info(stream)).state.last_seq;
  let published = 0;
  let index = 0;
  for (const purchase of purchases(options)) {
    const subject = `loyalty.tx.${purchase.memberId}`;
    const payload = purchasePayload(purchase);
    nc.publish(subject, payload);
    published += 1;
    if (options.duplicateEvery > 0 && index % options.duplicateEvery === 0) {
      nc.publish(subject, payload);
      published += 1;
    }
    index += 1;
    if (published % 2000 < 2) await nc.flush();
    // Bounded: let the server store what it has before the client buffers more.
    if (published % 50_000 < 2) {
      for (;;) {
        const stored = (await jsm.streams.info(stream)).state.last_seq - before;
        if (stored >= published - 20_000) break;
        await sleep(20);
      }
    }
  }
  await nc.flush();
  const deadline = Date.now() + 120_000;
  for (;;) {
    const last = (await jsm.streams.info(stream)).state.last_seq;
    if (last - before >= published) return { lastSequence: last, published };
    if (Date.now() > deadline) throw new Error(`stream ${stream} holds ${last - before} of ${published} published messages`);
    await sleep(50);
  }
}

/** What points of LMDB trouble look like in the engine's output. */
export const LMDB_TROUBLE = /MDB_|mdb\.c|freelist|Assertion|ERR_STORE|failed to commit|Commit failed/i;

export interface KillLoopOptions {
  readonly natsUrl: string;
  readonly dataDir: string;
  readonly env: Record<string, string>;
  readonly kills: number;
  readonly random: () => number;
  readonly lastSequence: number;
  readonly nc: NatsConnection;
  /** How long the engine runs after its first ack of the run, before the kill: uniform in [min, max]. */
  readonly runMsMin: number;
  readonly runMsMax: number;
  readonly finishTimeoutMs: number;
  readonly log?: (line: string) => void;
}

export interface KillLoopReport {
  kills: number;
  /** Starts that became ready (every start: the database always opened). */
  starts: number;
  /** Engine runs that ended on their own before the kill (a failed commit, an abort). */
  crashes: number;
  /** Runs whose output showed LMDB trouble, with the lines. */
  lmdbErrors: string[];
  /** Slowest start to ready (LMDB open, topology, actors). */
  startMsMax: number;
  /** Consumer ack floor at each kill. */
  floors: number[];
  finalExitCode: number | null;
}

function troubleIn(output: string): string[] {
  return output.split('\n').filter((line) => LMDB_TROUBLE.test(line)).slice(0, 5);
}

async function start(options: KillLoopOptions, report: KillLoopReport): Promise<EngineProcess> {
  const startedAt = Date.now();
  const engine = await startEngineProcess({ natsUrl: options.natsUrl, dataDir: options.dataDir, env: options.env, readyTimeoutMs: 120_000 });
  report.starts += 1;
  report.startMsMax = Math.max(report.startMsMax, Date.now() - startedAt);
  return engine;
}

/** Waits until the consumer's ack floor passes `floor` (the run has committed a batch) or the engine exits; false if it exited. */
async function firstAck(jsm: JetStreamManager, engine: EngineProcess, floor: number, lastSequence: number): Promise<boolean> {
  const deadline = Date.now() + 120_000;
  while (engine.child.exitCode === null && engine.child.signalCode === null) {
    const progress = await consumerProgress(jsm).catch(() => undefined);
    if (progress !== undefined && (progress.ackFloor > floor || progress.ackFloor >= lastSequence)) return true;
    if (Date.now() > deadline) throw new Error(`the engine acked nothing within 120 s (ack floor ${floor})`);
    await sleep(10);
  }
  return false;
}

/** Starts and SIGKILLs the engine `kills` times, then lets one last run finish the stream and stop gracefully. */
export async function killLoop(options: KillLoopOptions): Promise<KillLoopReport> {
  const jsm: JetStreamManager = await jetstreamManager(options.nc);
  const report: KillLoopReport = { kills: 0, starts: 0, crashes: 0, lmdbErrors: [], startMsMax: 0, floors: [], finalExitCode: null };
  while (report.kills < options.kills) {
    const floorAtStart = (await consumerProgress(jsm)).ackFloor;
    const engine = await start(options, report);
    // Kill only once this run has committed and acked something: a kill before the
    // first commit of a run tests nothing the previous kill did not.
    const committed = await firstAck(jsm, engine, floorAtStart, options.lastSequence);
    const runMs = options.runMsMin + Math.floor(options.random() * (options.runMsMax - options.runMsMin));
    const ended = !committed || (await Promise.race([engine.exited.then(() => true), sleep(runMs).then(() => false)]));
    if (ended) {
      report.crashes += 1;
      report.lmdbErrors.push(...troubleIn(engine.output()), `run ${report.starts} exited by itself with code ${engine.child.exitCode}`);
      continue;
    }
    const before = await consumerProgress(jsm);
    if (before.ackFloor >= options.lastSequence) {
      // Everything consumed: a kill now would test nothing. The caller sees fewer kills than asked.
      await engine.stop();
      options.log?.(`the engine consumed the whole stream after ${report.kills} kills`);
      break;
    }
    await engine.kill();
    report.kills += 1;
    report.lmdbErrors.push(...troubleIn(engine.output()));
    const after = await consumerProgress(jsm);
    report.floors.push(after.ackFloor);
    options.log?.(`kill ${report.kills} after ${runMs} ms: ack floor ${after.ackFloor} of ${options.lastSequence}, ${after.ackPending} delivered but unacked`);
  }
  const engine = await start(options, report);
  try {
    await waitForAckFloor(options.nc, options.lastSequence, options.finishTimeoutMs);
  } finally {
    report.finalExitCode = await engine.stop();
    report.lmdbErrors.push(...troubleIn(engine.output()));
  }
  return report;
}

export interface LedgerCheck {
  members: number;
  events: number;
  /** Events with no effect in the ledger. */
  lost: number;
  /** Events whose points were counted more than once. */
  doubled: number;
  /** Balances that differ from the independent sum, or from their own ledger. */
  wrongBalances: number;
  mismatches: string[];
}

/** Compares every member's balance and ledger with the load's own sums (1 point per 100 cents). */
export async function checkLedgers(dataDir: string, load: PurchaseLoadOptions, partitions: number, mapSizeBytes: number): Promise<LedgerCheck> {
  const expected = new Map<string, Map<string, number>>();
  for (const purchase of purchases(load)) {
    let events = expected.get(purchase.memberId);
    if (events === undefined) expected.set(purchase.memberId, (events = new Map()));
    events.set(purchase.id, purchase.points);
  }
  const check: LedgerCheck = { members: 0, events: 0, lost: 0, doubled: 0, wrongBalances: 0, mismatches: [] };
  const note = (text: string) => {
    if (check.mismatches.length < 20) check.mismatches.push(text);
  };
  const store = new LmdbStore({ dataDir, mapSizeBytes, partitions });
  try {
    for (const [memberId, events] of expected) {
      const partition = partitionOf(memberId, partitions);
      const state = store.readMember(partition, memberId);
      const ledger = state === undefined ? [] : [...store.ledgerOf(partition, memberId)];
      if (state !== undefined) check.members += 1;
      const view = state === undefined ? undefined : memberView(state, ledger);
      const entriesByEvent = new Map<string, number>();
      for (const entry of ledger) if (entry.balance === 'spendable') entriesByEvent.set(entry.eventId, (entriesByEvent.get(entry.eventId) ?? 0) + 1);
      let sum = 0;
      for (const [eventId, points] of events) {
        check.events += 1;
        sum += points;
        const got = view?.pointsByEvent.get(eventId) ?? 0;
        const entries = entriesByEvent.get(eventId) ?? 0;
        if (entries === 0) {
          check.lost += 1;
          note(`${memberId}/${eventId}: lost (no ledger entry)`);
        } else if (entries > 1 || got !== points) {
          check.doubled += 1;
          note(`${memberId}/${eventId}: ${entries} ledger entries for ${got} points, expected one for ${points}`);
        }
      }
      for (const eventId of entriesByEvent.keys()) if (!events.has(eventId)) note(`${memberId}: ledger entry for an unknown event ${eventId}`);
      if (view === undefined) {
        check.wrongBalances += 1;
        note(`${memberId}: missing`);
      } else if (view.spendable !== sum || view.ledgerSpendableSum !== view.spendable) {
        check.wrongBalances += 1;
        note(`${memberId}: balance ${view.spendable}, ledger ${view.ledgerSpendableSum}, expected ${sum}`);
      }
    }
  } finally {
    await store.close();
  }
  return check;
}
