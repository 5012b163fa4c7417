import { existsSync, readdirSync, lstatSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { registerCleanup } from './cleanup.js';
import { spawnChild, type ManagedChild, type StopResult } from './child.js';
import { freePort } from './ports.js';
import { makeTempDir, type TempDir } from './temp.js';

/** The repository root (bench/harness/ → ../..). */
export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
export const ENGINE_ENTRY = 'src/cli/main.ts';

/**
 * The engine as a child process, started the way an operator would
 * (`tsx src/cli/main.ts start`) with a fresh data directory and its own HTTP
 * port. It is run as `node --import tsx` rather than through npx so that the
 * pid we sample is the engine itself, not a wrapper (its worker threads are
 * in the same process, so /proc/<pid> covers them).
 */
export interface RunningEngine {
  readonly pid: number;
  readonly httpPort: number;
  readonly healthUrl: string;
  readonly metricsUrl: string;
  readonly dataDir: string;
  readonly child: ManagedChild;
  readonly startMs: number;
  /** SIGTERM, wait up to graceMs, then SIGKILL; measures the data dir, and removes it unless keepDataDir. */
  stop(graceMs?: number): Promise<EngineStopResult>;
  /** Removes a data directory kept after stop (also done on exit, whatever happens). */
  removeDataDir(): void;
}

export interface EngineStopResult extends StopResult {
  dataDirBytes: number;
}

export interface StartEngineOptions {
  natsUrl: string;
  programFile: string;
  logPath?: string;
  readyTimeoutMs?: number;
  /** More LOYALTY_* settings for the engine (e.g. LOYALTY_ACTORS). */
  extraEnv?: Record<string, string>;
  /** Keep the data directory after stop (for inspection). */
  keepDataDir?: boolean;
}

export function engineAvailable(): boolean {
  return existsSync(join(REPO_ROOT, ENGINE_ENTRY));
}

export async function startEngine(options: StartEngineOptions): Promise<RunningEngine> {
  if (!engineAvailable()) throw new Error(`the engine entry ${ENGINE_ENTRY} does not exist yet`);
  const dataDir: TempDir = makeTempDir('engine-data');
  const httpPort = await freePort();
  // The engine refuses unknown LOYALTY_* variables; pass only ours, never the caller's leftovers.
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('LOYALTY_')) env[name] = value;
  Object.assign(env, {
    LOYALTY_NATS_URL: options.natsUrl,
    LOYALTY_DATA_DIR: dataDir.path,
    LOYALTY_HTTP_PORT: String(httpPort),
    LOYALTY_HTTP_HOST: '127.0.0.1',
    LOYALTY_PROGRAM_FILE: options.programFile,
    ...options.extraEnv,
  });
  const started = Date.now();
  const child = spawnChild({
    name: 'engine',
    command: process.execPath,
    // BENCH_ENGINE_NODE_ARGS adds node flags to the engine only, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    args: [...(process.env.BENCH_ENGINE_NODE_ARGS ?? '').split(/\s+/).filter((arg) => arg !== ''), '--import', 'tsx', ENGINE_ENTRY, 'start'],
    cwd: REPO_ROOT,
    env,
    logPath: options.logPath,
  });
  const healthUrl = `http://127.0.0.1:${httpPort}/health`;
  let unregisterDataDir: (() => void) | undefined;
  const removeDataDir = (): void => {
    unregisterDataDir?.();
    dataDir.remove();
  };
  const stop = async (graceMs = 30_000): Promise<EngineStopResult> => {
    unregister();
    const result = await child.stop(graceMs);
    const dataDirBytes = diskUsageBytes(dataDir.path);
    if (options.keepDataDir !== true) dataDir.remove();
    else unregisterDataDir = registerCleanup(async () => dataDir.remove(), () => dataDir.remove());
    return { ...result, dataDirBytes };
  };
  const unregister = registerCleanup(
    () => stop(5_000),
    () => {
      child.process.kill('SIGKILL');
      dataDir.remove();
    },
  );
  try {
    await waitForHealth(child, healthUrl, options.readyTimeoutMs ?? 60_000);
  } catch (error) {
    await stop(5_000);
    throw error;
  }
  return {
    pid: child.pid,
    httpPort,
    healthUrl,
    metricsUrl: `http://127.0.0.1:${httpPort}/metrics`,
    dataDir: dataDir.path,
    child,
    startMs: Date.now() - started,
    stop,
    removeDataDir,
  };
}

async function waitForHealth(child: ManagedChild, url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void child.exited.then(() => {
    exited = true;
  });
  let lastError = '';
  while (Date.now() < deadline) {
    if (exited) throw new Error(`the engine exited before it was healthy; last output:\n${child.tail(30)}`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (response.status === 200) return;
      lastError = `HTTP ${response.status}`;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await sleep(200);
  }
  throw new Error(`the engine was not healthy at ${url} within ${timeoutMs} ms (${lastError}); last output:\n${child.tail(30)}`);
}

/** Bytes actually allocated on disk under a directory (sparse LMDB files count what they use). */
export function diskUsageBytes(path: string): number {
  let total = 0;
  const visit = (entry: string): void => {
    let stat;
    try {
      stat = lstatSync(entry);
    } catch {
      return;
    }
    total += stat.blocks * 512;
    if (stat.isDirectory()) for (const name of readdirSync(entry)) visit(join(entry, name));
  };
  visit(path);
  return total;
}
