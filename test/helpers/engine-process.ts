import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { findFreePort } from '../../src/transport/nats-server.js';

/**
 * The engine as a real child process (node --import tsx src/cli/main.ts start),
 * so tests can SIGKILL it mid-batch like a crashed host would.
 */
export const PROJECT_ROOT = resolve(import.meta.dirname, '../..');

export interface EngineProcess {
  readonly child: ChildProcess;
  readonly httpPort: number;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
  kill(): Promise<void>;
  stop(): Promise<number | null>;
}

export interface EngineProcessOptions {
  /** Absent: the engine starts its embedded nats-server (set LOYALTY_EMBEDDED_NATS_PORT in env to know where). */
  readonly natsUrl?: string;
  readonly dataDir: string;
  readonly programFile?: string;
  readonly env?: Record<string, string>;
  readonly readyTimeoutMs?: number;
  /** Every line the engine writes is appended here too (a test's whole log, for diagnosis). */
  readonly logFile?: string;
}

export function tempDataDir(prefix = 'loyalty-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export async function startEngineProcess(options: EngineProcessOptions): Promise<EngineProcess> {
  const httpPort = await findFreePort();
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    ...(options.natsUrl === undefined ? {} : { LOYALTY_NATS_URL: options.natsUrl }),
    LOYALTY_DATA_DIR: options.dataDir,
    LOYALTY_HTTP_PORT: String(httpPort),
    LOYALTY_PROGRAM_FILE: options.programFile ?? join(PROJECT_ROOT, 'config/programs/simple.yaml'),
    LOYALTY_LOG_LEVEL: 'warn',
    ...options.env,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'start'], {
    cwd: PROJECT_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
    if (options.logFile !== undefined) appendFileSync(options.logFile, chunk);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  let ready = false;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      const response = await fetch(`http://127.0.0.1:${httpPort}/health`);
      if (response.status === 200) {
        ready = true;
        break;
      }
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  if (!ready) {
    // The exit code when the engine stopped by itself (a refused start), null when it was still starting.
    const exitCode = child.exitCode;
    child.kill('SIGKILL');
    throw Object.assign(new Error(`engine did not become ready (exit code ${exitCode ?? 'none'}):\n${output}`), { exitCode });
  }
  return {
    child,
    httpPort,
    output: () => output,
    exited,
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

export interface ConsumerProgress {
  readonly ackFloor: number;
  readonly pending: number;
  readonly ackPending: number;
}

/**
 * Where the engine's consumer stands. A consumer recreated at sequence S
 * reports ack floor 0 until its first ack; its real floor is then S - 1.
 */
export async function consumerProgress(jsm: JetStreamManager, stream = 'LOYALTY_TX', consumer = 'loyalty-engine'): Promise<ConsumerProgress> {
  const info = await jsm.consumers.info(stream, consumer);
  const ackFloor = Math.max(info.ack_floor.stream_seq, (info.config.opt_start_seq ?? 1) - 1);
  return { ackFloor, pending: info.num_pending, ackPending: info.num_ack_pending };
}

/** Waits until the engine has acked everything up to `lastSequence`, with nothing left pending. */
export async function waitForAckFloor(nc: NatsConnection, lastSequence: number, timeoutMs: number, consumer = 'loyalty-engine'): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const deadline = Date.now() + timeoutMs;
  let progress: ConsumerProgress | undefined;
  while (Date.now() < deadline) {
    progress = await consumerProgress(jsm, 'LOYALTY_TX', consumer).catch(() => undefined);
    if (progress !== undefined && progress.ackFloor >= lastSequence && progress.ackPending === 0) return;
    await sleep(100);
  }
  const info = await jsm.consumers.info('LOYALTY_TX', consumer).catch(() => undefined);
  const state = info === undefined ? {} : { delivered: info.delivered, ackFloor: info.ack_floor, redelivered: info.num_redelivered, waiting: info.num_waiting };
  throw new Error(`ack floor did not reach ${lastSequence} in ${timeoutMs} ms: ${JSON.stringify(progress)}; consumer ${JSON.stringify(state)}`);
}

/** Polls a condition until it holds, or fails naming what it waited for. */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

/** Publishes raw payloads with core NATS (flushing in rounds) and checks the stream stored them all. */
export async function publishAll(
  nc: NatsConnection,
  messages: readonly { subject: string; payload: Uint8Array; headers?: import('@nats-io/nats-core').MsgHdrs }[],
  stream = 'LOYALTY_TX',
): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const before = (await jsm.streams.info(stream)).state.last_seq;
  for (let index = 0; index < messages.length; index++) {
    const message = messages[index]!;
    nc.publish(message.subject, message.payload, message.headers === undefined ? undefined : { headers: message.headers });
    if (index % 2000 === 1999) await nc.flush();
  }
  await nc.flush();
  const deadline = Date.now() + 30_000;
  for (;;) {
    const last = (await jsm.streams.info(stream)).state.last_seq;
    if (last - before >= messages.length) return last;
    if (Date.now() > deadline) throw new Error(`stream ${stream} holds ${last - before} of ${messages.length} published messages`);
    await sleep(50);
  }
}
