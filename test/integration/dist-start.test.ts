import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findFreePort } from '../../src/transport/nats-server.js';
import { PROJECT_ROOT, sleep, tempDataDir } from '../helpers/engine-process.js';
import { startTestNatsServer, type TestNatsServer } from '../helpers/nats-server.js';

/**
 * The `loyalty` command as installed: package.json's `bin` (dist/, built by
 * `npm install` through the prepare script) run with plain node from a folder
 * that is not the repository, with no LOYALTY_PROGRAM_FILE: the default
 * program must come from the package.
 */

const BIN = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js');

function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stat = statSync(path);
    newest = Math.max(newest, stat.isDirectory() ? newestMtimeMs(path) : stat.mtimeMs);
  }
  return newest;
}

let nats: TestNatsServer;
const elsewhere = tempDataDir('loyalty-dist-cwd-');

beforeAll(async () => {
  // npm install builds dist; rebuild only when a source changed since (development runs).
  if (!existsSync(BIN) || statSync(BIN).mtimeMs < newestMtimeMs(join(PROJECT_ROOT, 'src'))) {
    try {
      execFileSync('npm', ['run', 'build', '--silent'], { cwd: PROJECT_ROOT, stdio: 'pipe' });
    } catch (error) {
      // tsc still emits with type errors (the type-check step reports those); only a missing entry is this test's failure.
      if (!existsSync(BIN)) throw error;
    }
  }
  nats = await startTestNatsServer();
}, 120_000);

afterAll(async () => {
  await nats?.stop();
  elsewhere.remove();
});

describe('the built loyalty command', () => {
  it('package.json points bin at the built entry, with a node shebang', async () => {
    const manifest = (await import('../../package.json', { with: { type: 'json' } })).default as { bin: Record<string, string>; scripts: Record<string, string> };
    expect(join(PROJECT_ROOT, manifest.bin.loyalty!)).toBe(BIN);
    expect(manifest.scripts.prepare).toBe('npm run build');
    expect(execFileSync('head', ['-1', BIN]).toString().trim()).toBe('#!/usr/bin/env node');
  });

  it('starts from another directory with the packaged default program, serves /health, and stops on SIGTERM with exit code 0', async () => {
    const httpPort = await findFreePort();
    const child = spawn(process.execPath, [BIN, 'start'], {
      cwd: elsewhere.path,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        LOYALTY_NATS_URL: nats.url,
        LOYALTY_DATA_DIR: join(elsewhere.path, 'data'),
        LOYALTY_HTTP_PORT: String(httpPort),
        LOYALTY_ACTORS: '1',
        LOYALTY_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let health: { status: number; body: string } | undefined;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline && child.exitCode === null; await sleep(100)) {
      try {
        const response = await fetch(`http://127.0.0.1:${httpPort}/health`);
        health = { status: response.status, body: await response.text() };
        if (response.status === 200) break;
      } catch {
        // not listening yet
      }
    }
    expect(health?.status, output).toBe(200);
    expect(output).toContain('"program":"retail"');
    child.kill('SIGTERM');
    expect(await exited, output).toBe(0);
  }, 90_000);
});
