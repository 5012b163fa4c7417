import { rmSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { findNatsServerBinary, NATS_SERVER_PID_FILE, startNatsServer, type NatsServerHandle } from '../../src/transport/nats-server.js';

/**
 * A real nats-server per test file (or per test) on a free port in a fresh temp
 * directory. Every server started here is killed and its directory removed when
 * the test process exits, even if a test failed before calling stop(): a stray
 * server would hold ports and disk across the whole run.
 */

export interface TestNatsServer {
  url: string;
  port: number;
  monitorUrl: string;
  storeDir: string;
  pid: number;
  handle: NatsServerHandle;
  /** Graceful stop, then the temp directory is removed. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL (a crash); the directory stays until stop() or process exit. */
  kill(): void;
}

export interface StartTestNatsServerOptions {
  extraConfig?: string;
  /** Reuse a directory (e.g. to restart on the same JetStream store); not removed by stop() when given. */
  storeDir?: string;
  port?: number;
}

interface Live {
  pid: number;
  storeDir: string;
  removeDir: boolean;
}

const live = new Set<Live>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL and rmSync are.
  process.once('exit', () => {
    for (const entry of live) {
      try {
        process.kill(entry.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      if (entry.removeDir) rmSync(entry.storeDir, { recursive: true, force: true });
    }
    live.clear();
  });
}

const TEMP_PREFIX = 'loyalty-nats-';
/** Old enough that no running test can still mean to restart a server on it (tests time out at 60 s). */
const STALE_DIR_AGE_MS = 15 * 60_000;
const SWEEP_DIRS_MAX = 200;

function isDead(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * A runner killed mid-test takes its servers with it (parent-death signal) but
 * cannot remove their directories. Remove those left by earlier runs: only ours
 * (prefix), only with a pid file whose process is gone, only when long untouched,
 * since other runs on this machine use the same prefix at the same time.
 */
async function sweepStaleDirs(): Promise<void> {
  const names = (await readdir(tmpdir())).filter((name) => name.startsWith(TEMP_PREFIX)).slice(0, SWEEP_DIRS_MAX);
  for (const name of names) {
    const dir = join(tmpdir(), name);
    try {
      const pidFile = join(dir, NATS_SERVER_PID_FILE);
      const [pidText, info] = await Promise.all([readFile(pidFile, 'utf8'), stat(pidFile)]);
      const pid = Number.parseInt(pidText.trim(), 10);
      if (Number.isInteger(pid) && pid > 1 && isDead(pid) && Date.now() - info.mtimeMs > STALE_DIR_AGE_MS) {
        await rm(dir, { recursive: true, force: true });
      }
    } catch {
      // No pid file, not ours to judge, or removed by someone else meanwhile.
    }
  }
}

let swept: Promise<void> | undefined;

let binary: Promise<string> | undefined;

/** Looked up once per process; tests never install packages. */
export function testNatsServerBinary(): Promise<string> {
  binary ??= findNatsServerBinary({ autoInstall: false });
  return binary;
}

export async function startTestNatsServer(options: StartTestNatsServerOptions = {}): Promise<TestNatsServer> {
  installExitHook();
  swept ??= sweepStaleDirs().catch(() => {});
  await swept;
  const removeDir = options.storeDir === undefined;
  const storeDir = options.storeDir ?? (await mkdtemp(join(tmpdir(), TEMP_PREFIX)));
  let handle: NatsServerHandle;
  try {
    handle = await startNatsServer({
      binary: await testNatsServerBinary(),
      storeDir,
      port: options.port ?? 0,
      monitorPort: 0,
      extraConfig: options.extraConfig,
      // Small limits: tests move little data, and a 2-core CI box has little to spare.
      memoryStoreBytesMax: 256 * 1024 * 1024,
      fileStoreBytesMax: 2 * 1024 ** 3,
      startTimeoutMs: 10_000,
      stopTimeoutMs: 5_000,
    });
  } catch (error) {
    if (removeDir) await rm(storeDir, { recursive: true, force: true });
    throw error;
  }
  const entry: Live = { pid: handle.pid, storeDir, removeDir };
  live.add(entry);
  let stopping: Promise<void> | undefined;
  return {
    url: handle.url,
    port: handle.port,
    monitorUrl: handle.monitorUrl,
    storeDir,
    pid: handle.pid,
    handle,
    stop: () => {
      stopping ??= (async () => {
        await handle.stop();
        live.delete(entry);
        if (removeDir) await rm(storeDir, { recursive: true, force: true });
      })();
      return stopping;
    },
    kill: () => handle.kill(),
  };
}

/** A client that reconnects quickly and forever, so crash tests do not wait on defaults. */
export function connectTest(url: string, options: Partial<NodeConnectionOptions> = {}): Promise<NatsConnection> {
  return connect({
    servers: url,
    name: 'loyalty-test',
    maxReconnectAttempts: -1,
    reconnectTimeWait: 50,
    reconnectJitter: 25,
    timeout: 5_000,
    ...options,
  });
}
