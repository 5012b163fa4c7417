import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { registerCleanup } from './cleanup.js';
import { freePort } from './ports.js';
import { makeTempDir, type TempDir } from './temp.js';

/**
 * A private PostgreSQL cluster for the ledger baseline: initdb in a temp
 * directory, postgres on a free port on 127.0.0.1 only (its socket in the same
 * directory), stopped and removed when the run ends, whatever happens.
 *
 * When PostgreSQL is missing and we are root, it is installed from Debian's
 * packages (`apt-get install -y postgresql`, bounded in time); otherwise the
 * baseline is skipped with a note saying how to install it. Debian's initdb
 * refuses to run as root: as root the cluster runs as the `postgres` user the
 * package creates (through runuser).
 */

export interface PostgresCluster {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  /** The postmaster's pid: its children (backends, WAL writer, checkpointer) are sampled with it. */
  readonly pid: number;
  readonly version: string;
  readonly settings: Record<string, string>;
  stop(): Promise<void>;
}

export type PostgresAvailability = { ok: true; binDir: string } | { ok: false; reason: string };

const APT_TIMEOUT_MS = 300_000;
/** Durability as a production ledger would run it: fsync and synchronous commit on. */
export const POSTGRES_SETTINGS: Record<string, string> = {
  listen_addresses: '127.0.0.1',
  fsync: 'on',
  synchronous_commit: 'on',
  shared_buffers: '256MB',
  max_wal_size: '4GB',
  checkpoint_timeout: '15min',
  max_connections: '20',
};

export function findPostgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((name) => /^\d+$/.test(name) && existsSync(join(root, name, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? join(root, versions[0]!, 'bin') : null;
}

/** Finds PostgreSQL, installing it with apt-get when missing and allowed (root, install = true). */
export function ensurePostgres(install: boolean, log: (line: string) => void): PostgresAvailability {
  const found = findPostgresBinDir();
  if (found !== null) return { ok: true, binDir: found };
  if (!install) return { ok: false, reason: 'PostgreSQL is not installed (install it with: sudo apt-get install -y postgresql)' };
  if (process.getuid?.() !== 0) {
    return { ok: false, reason: 'PostgreSQL is not installed and the bench is not root; install it with: sudo apt-get install -y postgresql' };
  }
  log('postgres baseline: PostgreSQL is missing; installing it with apt-get (up to 5 minutes)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update', '-qq'], { env, timeout: APT_TIMEOUT_MS, stdio: 'ignore' });
  const installed = spawnSync('apt-get', ['install', '-y', '-qq', 'postgresql'], { env, timeout: APT_TIMEOUT_MS, stdio: 'ignore' });
  const binDir = findPostgresBinDir();
  if (binDir === null) {
    return { ok: false, reason: `apt-get install postgresql failed (update exit ${update.status}, install exit ${installed.status})` };
  }
  return { ok: true, binDir };
}

function runAs(user: string | null, command: string, args: readonly string[], timeoutMs: number): string {
  const [file, fullArgs] = user === null ? [command, args] : ['runuser', ['-u', user, '--', command, ...args]];
  return execFileSync(file, fullArgs as string[], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
}

export async function startPostgres(binDir: string): Promise<PostgresCluster> {
  const root = process.getuid?.() === 0;
  // As root, the cluster belongs to the postgres user of the Debian package.
  const owner = root ? 'postgres' : null;
  const dir: TempDir = makeTempDir('postgres');
  if (root) {
    const ids = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim();
    const group = execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim();
    chownSync(dir.path, Number(ids), Number(group));
  }
  const dataDir = join(dir.path, 'data');
  const user = 'bench';
  const database = 'bench';
  const port = await freePort();
  const logFile = join(dir.path, 'postgres.log');
  let started = false;
  const stopSync = (): void => {
    if (!started) return;
    try {
      runAs(owner, join(binDir, 'pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', '-t', '30', 'stop'], 40_000);
    } catch {
      // Already stopped, or stuck: kill the postmaster from its pid file.
      try {
        const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
        if (pid > 0) process.kill(pid, 'SIGQUIT');
      } catch {
        // Nothing left to stop.
      }
    }
    started = false;
  };
  const unregister = registerCleanup(
    async () => {
      stopSync();
      dir.remove();
    },
    () => {
      stopSync();
      dir.remove();
    },
  );
  try {
    runAs(owner, join(binDir, 'initdb'), ['-D', dataDir, '-U', user, '-A', 'trust', '-E', 'UTF8', '--no-sync', '--locale=C'], 120_000);
    const options = [`-p ${port}`, `-k ${dir.path}`, ...Object.entries(POSTGRES_SETTINGS).map(([name, value]) => `-c ${name}=${value}`)].join(' ');
    started = true;
    runAs(owner, join(binDir, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-o', options, '-w', '-t', '60', 'start'], 90_000);
    execFileSync(join(binDir, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', user, database], { timeout: 30_000, stdio: 'ignore' });
  } catch (error) {
    unregister();
    stopSync();
    dir.remove();
    const stderr = (error as { stderr?: string }).stderr;
    throw new Error(`could not start PostgreSQL: ${(error as Error).message}${stderr ? `\n${stderr}` : ''}`);
  }
  const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  let version = 'unknown';
  try {
    version = execFileSync(join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    // Reported as unknown.
  }
  return {
    host: '127.0.0.1',
    port,
    user,
    database,
    pid,
    version,
    settings: { ...POSTGRES_SETTINGS, runAs: owner ?? userInfo().username },
    async stop() {
      unregister();
      stopSync();
      dir.remove();
    },
  };
}
