import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { registerCleanup } from './cleanup.js';
import { spawnChild, type ManagedChild, type StopResult } from './child.js';
import { freePort } from './ports.js';
import { makeTempDir, type TempDir } from './temp.js';

export const NATS_SERVER_BINARY = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

/**
 * A nats-server with JetStream for one bench run: its own free port on
 * 127.0.0.1, its own store in a temp dir (removed on stop), so runs never see
 * each other's streams and nothing outside the run is touched.
 */
export interface BenchNatsServer {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly version: string;
  readonly child: ManagedChild;
  stop(): Promise<StopResult>;
}

export interface StartNatsOptions {
  /** Bytes a client may have pending before the server cuts it as a slow consumer. */
  maxPendingBytes?: number;
  readyTimeoutMs?: number;
  logPath?: string;
  /** More lines for the server's config, e.g. cluster mode's partition mapping (`mappings = { ... }`). */
  extraConfig?: string;
}

export function natsServerVersion(): string {
  try {
    return execFileSync(NATS_SERVER_BINARY, ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

export async function startBenchNatsServer(options: StartNatsOptions = {}): Promise<BenchNatsServer> {
  if (!existsSync(NATS_SERVER_BINARY)) {
    throw new Error(`nats-server not found at ${NATS_SERVER_BINARY} (set NATS_SERVER_BIN)`);
  }
  const dir: TempDir = makeTempDir('nats');
  const port = await freePort();
  const configPath = join(dir.path, 'nats-server.conf');
  // max_pending is raised from the 64 MiB default: the bench's outcome subscriber shares a
  // process with the publisher and may fall behind for a moment at full speed.
  writeFileSync(
    configPath,
    [
      `listen: "127.0.0.1:${port}"`,
      `max_pending: ${options.maxPendingBytes ?? 512 * 1024 * 1024}`,
      'max_payload: 1048576',
      'jetstream {',
      `  store_dir: ${JSON.stringify(join(dir.path, 'store'))}`,
      '  max_memory_store: 1073741824',
      '}',
      ...(options.extraConfig === undefined ? [] : [options.extraConfig]),
      '',
    ].join('\n'),
  );
  const child = spawnChild({
    name: 'nats-server',
    command: NATS_SERVER_BINARY,
    args: ['-c', configPath],
    logPath: options.logPath,
  });
  try {
    await child.waitForOutput(/Server is ready/, options.readyTimeoutMs ?? 15_000);
  } catch (error) {
    await child.stop(2_000);
    dir.remove();
    throw error;
  }
  const stop = async (): Promise<StopResult> => {
    unregister();
    const result = await child.stop(10_000);
    dir.remove();
    return result;
  };
  const unregister = registerCleanup(stop, () => {
    child.process.kill('SIGKILL');
    dir.remove();
  });
  return { url: `nats://127.0.0.1:${port}`, port, pid: child.pid, version: natsServerVersion(), child, stop };
}
