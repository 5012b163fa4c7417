/**
 * LMDB under kill -9, without the engine: a child process writes like the
 * engine does (two worker threads committing batches of small member records
 * and one large outbox value each, removing earlier outbox values in later
 * commits; the main thread removing outbox entries at start), and is SIGKILLed
 * at random moments, again and again, on one data directory. Any LMDB error,
 * or a database that does not open, fails the run.
 *
 *   npx tsx scripts/lmdb-kill-loop.ts --kills 200 [--options engine|store] [--seed 1]
 *
 * `--options engine` opens the environment as the engine did before issue 14
 * (lmdb-js defaults: overlappingSync on Linux); `--options store` opens it the
 * way src/store/lmdb.ts does now (LMDB_OPEN_OPTIONS).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { RootDatabase } from 'lmdb';

/** LMDB_MODULE: another build of lmdb-js (a directory holding its package), e.g. one with tracing compiled in. */
const LMDB_DIR = process.env.LMDB_MODULE;
const { open } = (await import(LMDB_DIR === undefined ? 'lmdb' : `${LMDB_DIR}/node-index.js`)) as typeof import('lmdb');

interface ChildConfig {
  readonly path: string;
  readonly options: 'engine' | 'store';
  readonly seed: number;
  /** Extra lmdb-js open options (`--open '{"overlappingSync":false}'`), with `--options engine`. */
  readonly open?: Record<string, unknown>;
}

function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The open options under test, resolved in the main thread and handed to the worker threads as data. */
async function openOptions(config: ChildConfig): Promise<Record<string, unknown>> {
  if (config.options === 'store') {
    const { LMDB_OPEN_OPTIONS } = await import('../src/store/lmdb.js');
    return { ...LMDB_OPEN_OPTIONS };
  }
  return config.open ?? {};
}

function openRoot(config: ChildConfig, options: Record<string, unknown>): RootDatabase {
  return open({ path: config.path, maxDbs: 16, mapSize: 2 ** 34, compression: false, ...options });
}

/**
 * One actor thread, as plain JavaScript (a Node 20 worker thread gets no tsx
 * ESM hooks): batches of member puts plus one large outbox value, earlier
 * outbox values removed by the next commit, each commit awaited until flushed.
 */
const ACTOR_THREAD = `
const { workerData, parentPort } = require('node:worker_threads');
const { open } = require(workerData.lmdbPath);
function prng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
(async () => {
  const config = workerData;
  const root = open({ path: config.path, maxDbs: 16, mapSize: 2 ** 34, compression: false, ...config.open });
  const records = root.openDB({ name: 'members', encoding: 'msgpack' });
  const outbox = root.openDB({ name: 'outbox', encoding: 'binary' });
  const random = prng(config.seed * 31 + config.actor);
  const boot = Date.now();
  let batch = 0;
  let published = [];
  for (;;) {
    batch += 1;
    const events = 1 + Math.floor(random() * 1024);
    let last = Promise.resolve();
    for (let index = 0; index < events; index++) {
      const member = 'm-' + Math.floor(random() * 20000);
      const partition = member.length % 64;
      records.put([partition, member, 0], { memberId: member, spendable: Math.floor(random() * 1e6), lots: Array.from({ length: Math.floor(random() * 12) }, () => random()) });
      records.put([partition, member, 1, batch * 10000 + index], { kind: 'earn', points: index, text: 'x'.repeat(Math.floor(random() * 200)) });
      last = records.put([partition, member, 2, 'e-' + boot + '-' + config.actor + '-' + batch + '-' + index], new Uint8Array(100 + Math.floor(random() * 300)));
    }
    const key = [boot, config.actor, batch];
    last = outbox.put(key, new Uint8Array(events * (200 + Math.floor(random() * 400))));
    for (const old of published) last = outbox.remove(old);
    await last;
    await root.flushed;
    // As the outcome stream acknowledges later, some entries stay a batch or two longer.
    published = random() < 0.7 ? [key] : [];
    if (batch <= 5) process.stdout.write('actor ' + config.actor + ' committed batch ' + batch + '\\n');
  }
})().catch((error) => { process.stderr.write('LMDB-ERROR actor ' + workerData.actor + ': ' + error.message + '\\n'); process.exit(3); });
`;

async function child(config: ChildConfig): Promise<void> {
  const options = await openOptions(config);
  const root = openRoot(config, options);
  const outbox = root.openDB({ name: 'outbox', encoding: 'binary' });
  // As the engine starts: re-publish, then remove, every outbox entry left by the last run.
  const keys: unknown[] = [];
  for (const { key } of outbox.getRange({})) keys.push(key);
  let last: Promise<unknown> = Promise.resolve();
  for (const key of keys) last = outbox.remove(key as [number, number, number]);
  await last;
  await root.flushed;
  process.stdout.write(`start-commit-ok ${keys.length}\n`);
  for (let actor = 0; actor < 2; actor++) {
    const worker = new Worker(ACTOR_THREAD, { eval: true, workerData: { ...config, actor, open: options, lmdbPath: LMDB_DIR === undefined ? createRequire(import.meta.url).resolve('lmdb') : `${LMDB_DIR}/dist/index.cjs` } });
    worker.on('error', (error) => {
      process.stderr.write(`LMDB-ERROR actor ${actor}: ${error.message}\n`);
      process.exit(3);
    });
  }
}

async function parent(): Promise<void> {
  const args = new Map<string, string>();
  for (let index = 2; index < process.argv.length; index += 2) args.set(process.argv[index]!.replace(/^--/, ''), process.argv[index + 1] ?? '');
  const kills = Number(args.get('kills') ?? 100);
  const options = (args.get('options') ?? 'store') as 'engine' | 'store';
  const seed = Number(args.get('seed') ?? Date.now() % 100_000);
  const random = prng(seed);
  const dir = mkdtempSync(join(tmpdir(), 'lmdb-kill-'));
  const path = join(dir, 'state');
  console.log(`lmdb kill loop: ${kills} kills, options ${options} ${args.get('open') ?? ''}, seed ${seed}, ${path}`);
  let failures = 0;
  const started = Date.now();
  try {
    for (let kill = 1; kill <= kills; kill++) {
      const config: ChildConfig = { path, options, seed: seed + kill, ...(args.has('open') ? { open: JSON.parse(args.get('open')!) as Record<string, unknown> } : {}) };
      const proc = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--child', JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      proc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      proc.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
      // Wait until the start commit is through (or the child failed), then kill at a random moment.
      const deadline = Date.now() + 60_000;
      while (!out.includes('start-commit-ok') && proc.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      if (proc.exitCode === null) {
        const runMs = args.has('run-ms') ? Number(args.get('run-ms')) : 50 + Math.floor(random() * 1500);
        await new Promise((r) => setTimeout(r, runMs));
        proc.kill('SIGKILL');
      }
      const code = await exited;
      const bad = /MDB_|LMDB-ERROR|Error|freelist/i.test(out) || (code !== null && code !== 0);
      if (bad) {
        failures += 1;
        console.log(`kill ${kill}: FAILED (exit ${code})\n${out.slice(-2000)}`);
        if (args.get('stop-on-failure') !== 'false') break;
      } else if (kill % 10 === 0) console.log(`kill ${kill}: ok (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }
  } finally {
    if (args.get('keep') !== 'true') rmSync(dir, { recursive: true, force: true });
  }
  console.log(failures === 0 ? `PASS: ${kills} kills, no LMDB error` : `FAIL: ${failures} failure(s)`);
  process.exit(failures === 0 ? 0 : 1);
}

if (process.argv[2] === '--child') await child(JSON.parse(process.argv[3]!) as ChildConfig);
else await parent();
