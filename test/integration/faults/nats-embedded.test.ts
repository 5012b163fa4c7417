import { execFileSync } from 'node:child_process';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterEach, describe, expect, it } from 'vitest';
import { findFreePort } from '../../../src/transport/nats-server.js';
import { consumerProgress, sleep, startEngineProcess, tempDataDir, waitFor, waitForAckFloor, type EngineProcess } from '../../helpers/engine-process.js';
import { health, waitForHealth } from '../../helpers/health.js';
import { checkLedgers, publishPurchases, type PurchaseLoadOptions } from '../../helpers/kill-loop.js';
import { connectTest } from '../../helpers/nats-server.js';

/**
 * Issue 14, item 2, the embedded nats-server (no LOYALTY_NATS_URL): the
 * engine's own supervisor owns the server. SIGKILL of that server mid-load:
 * the supervisor starts it again on the same port and store, the engine
 * reconnects and resumes at the consumer's ack floor. SIGSTOP then SIGCONT:
 * /health answers 503 naming NATS while it is frozen, then 200. Both end with
 * every balance and ledger equal to an independent sum: 0 lost, 0 doubled.
 */
const PARTITIONS = 16;
const load = (seed: number): PurchaseLoadOptions => ({ seed, events: 24_000, members: 2_400, duplicateEvery: 25 });

/** The pid of the nats-server whose store is under this engine's data dir. */
function embeddedServerPid(dataDir: string): number {
  const pids = execFileSync('pgrep', ['-f', `${dataDir}/nats`], { encoding: 'utf8' })
    .split('\n')
    .map(Number)
    .filter((pid) => pid > 0);
  for (const pid of pids) {
    const command = execFileSync('ps', ['-o', 'comm=', '-p', String(pid)], { encoding: 'utf8' }).trim();
    if (command === 'nats-server') return pid;
  }
  throw new Error(`no nats-server running for ${dataDir} (pgrep found ${pids.join(', ') || 'nothing'})`);
}

describe('embedded nats-server faults while the engine consumes', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  async function setUp(seed: number): Promise<{ nc: NatsConnection; engine: EngineProcess; lastSequence: number; dataDir: string }> {
    const data = tempDataDir('loyalty-embedded-fault-');
    cleanups.push(async () => data.remove());
    const natsPort = await findFreePort();
    const engine = await startEngineProcess({
      dataDir: data.path,
      readyTimeoutMs: 60_000,
      env: { LOYALTY_PARTITIONS: String(PARTITIONS), LOYALTY_EMBEDDED_NATS_PORT: String(natsPort), LOYALTY_LOG_LEVEL: 'info' },
    });
    // Stopped gracefully first (it stops its nats-server); killed only if that did not happen.
    cleanups.push(async () => {
      if (engine.child.exitCode === null) await engine.kill();
    });
    const nc = await connectTest(`nats://127.0.0.1:${natsPort}`, { maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    cleanups.push(() => nc.close());
    const { lastSequence } = await publishPurchases(nc, load(seed));
    const jsm = await jetstreamManager(nc);
    // Mid-load: the engine has acked some, far from all.
    for (;;) {
      const progress = await consumerProgress(jsm);
      if (progress.ackFloor > lastSequence / 10) break;
      await sleep(20);
    }
    return { nc, engine, lastSequence, dataDir: data.path };
  }

  async function finish(nc: NatsConnection, engine: EngineProcess, lastSequence: number, dataDir: string, seed: number): Promise<void> {
    await waitForAckFloor(nc, lastSequence, 120_000);
    await nc.close();
    expect(await engine.stop()).toBe(0);
    expect(engine.output()).not.toMatch(/MDB_|failed to commit|keeps failing/);
    const check = await checkLedgers(dataDir, load(seed), PARTITIONS, 2 ** 30);
    expect(check.mismatches).toEqual([]);
    expect({ lost: check.lost, doubled: check.doubled, wrongBalances: check.wrongBalances, events: check.events }).toEqual({ lost: 0, doubled: 0, wrongBalances: 0, events: load(seed).events });
  }

  it('SIGKILL of the embedded nats-server: the supervisor restarts it on the same port, nothing lost or doubled', async () => {
    const seed = 1411;
    const { nc, engine, lastSequence, dataDir } = await setUp(seed);
    const killed = embeddedServerPid(dataDir);
    const killedAt = Date.now();
    process.kill(killed, 'SIGKILL');
    // The restart is quick (100 ms delay, then JetStream recovers its store), so /health may
    // show 503 only for a moment: the supervisor's log says what happened, every time.
    await waitFor(() => /exited unexpectedly/.test(engine.output()), 10_000, 'the supervisor to see the exit');
    await waitFor(() => {
      try {
        return embeddedServerPid(dataDir) !== killed;
      } catch {
        return false;
      }
    }, 30_000, 'a new nats-server');
    await waitForHealth(engine.httpPort, (answer) => answer.status === 200, 30_000, 'NATS back');
    console.log(`embedded nats-server SIGKILLed: a new one and /health 200 after ${Date.now() - killedAt} ms`);
    expect(engine.child.exitCode).toBeNull();
    await finish(nc, engine, lastSequence, dataDir, seed);
    console.log(`embedded nats-server SIGKILL: ${load(seed).events} events, lost 0, doubled 0, ${Date.now() - killedAt} ms from the kill to every event applied`);
  }, 150_000);

  it('SIGSTOP then SIGCONT of the embedded nats-server: /health says it does not answer, then the engine carries on', async () => {
    const seed = 1412;
    const { nc, engine, lastSequence, dataDir } = await setUp(seed);
    const pid = embeddedServerPid(dataDir);
    const stoppedAt = Date.now();
    process.kill(pid, 'SIGSTOP');
    try {
      const frozen = await waitForHealth(engine.httpPort, (answer) => answer.status === 503, 15_000, 'NATS not answering');
      expect(JSON.stringify(frozen.body)).toMatch(/nats/i);
      await sleep(3_000);
      expect((await health(engine.httpPort)).status).toBe(503);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitForHealth(engine.httpPort, (answer) => answer.status === 200, 30_000, 'NATS answering again');
    // The same server carried on: no restart was needed.
    expect(embeddedServerPid(dataDir)).toBe(pid);
    await finish(nc, engine, lastSequence, dataDir, seed);
    console.log(`embedded nats-server SIGSTOP ~3 s: ${load(seed).events} events, lost 0, doubled 0, ${Date.now() - stoppedAt} ms from the stop to every event applied`);
  }, 150_000);
});
