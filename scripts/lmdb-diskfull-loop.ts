/**
 * LMDB on a full disk, without the engine: the disk-full fault test's
 * scenario (test/integration/faults/resources.test.ts) as a loop. Needs root.
 *
 * Each iteration mounts a 30 MiB tmpfs under /tmp (unmounted again whatever
 * happens), and a child process opens it with the engine's options
 * (LMDB_OPEN_OPTIONS of src/store/lmdb.ts) and writes like the engine: two
 * worker threads commit batches of member records (read before they are
 * written) and one large outbox value each, removing earlier outbox values in
 * later commits (some stay, as outcomes not yet acknowledged do); the main
 * thread reads now and then. When a commit fails for lack of space (EIO from a
 * short write, or ENOSPC) the child stops its writers, closes the environment
 * and exits 1, as the engine does with ERR_STORE_DISK_FULL. The tmpfs is then
 * grown in place (mount -o remount,size=200m), and a fresh child makes the
 * first start after the growth: like Engine.republishOutbox it reads every
 * outbox entry left behind and removes them in commits made while that range
 * read is still open, then the actors write a few batches. That is where
 * lmdb-js 3.5.6 could die of SIGABRT ("Freelist record not found …
 * Assertion 'freelist_written_start >= mop_len' failed in
 * mdb_freelist_save()"; see PATCH2 in scripts/lmdb-native.mjs). After a
 * failed first start a second one is made, to see that it resumes.
 *
 *   npx tsx scripts/lmdb-diskfull-loop.ts --iterations 30
 *   LMDB_MODULE=/tmp/x/node_modules/lmdb npx tsx scripts/lmdb-diskfull-loop.ts --iterations 30 --keep true
 *   npx tsx scripts/lmdb-diskfull-loop.ts --replay /tmp/lmdb-diskfull-kept-XXXX/state --iterations 20
 *
 * LMDB_MODULE=<dir of an lmdb package> runs another build of lmdb-js than
 * node_modules/lmdb (e.g. one that scripts/lmdb-native.mjs built in a copy).
 * `--keep true` keeps a copy of the environment as the full disk left it
 * (/tmp/lmdb-diskfull-kept-*) whenever the first start after growth fails;
 * `--replay <dir>` then makes that first start again and again, each on a
 * fresh copy (the start is deterministic given the environment: a kept state
 * that aborted once aborts every time on the same build). `--check <program>`
 * runs `<program> <environment dir>` after every start (e.g. a page-accounting
 * checker built against lmdb-js's mdb.c) and counts a non-zero exit.
 * `--log-dir <dir>` keeps every child's output.
 *
 * The workload's knobs (defaults in brackets): --size-mb [30] --grow-mb [200]
 * --batches [20] per actor after growth (at most --run-ms [10000]), --reads
 * [true], --republish-group [1] outbox entries per commit at start,
 * --outbox-left [0.9] the share of outbox entries a run leaves behind,
 * --hold-ms [20] the main thread's longest read, --fill-events and
 * --resume-events [1024] events per batch at most, --pipeline [1] batches an
 * actor has in flight, --options [store] (or `engine`: lmdb-js defaults, with
 * --open '{…}'), --seed, --stop-on-abort true.
 *
 * The last line is the summary: `SUMMARY: <n> iterations, <a> aborted first
 * starts (<f> of them the free-list assertion), <e> other failures, <s> failed
 * second starts, …`; exit 0 when no start after the growth failed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { RootDatabase } from 'lmdb';
import { prng } from '../test/helpers/kill-loop.js';

/** LMDB_MODULE: another build of lmdb-js (a directory holding its package). */
const LMDB_DIR = process.env.LMDB_MODULE;
const { open } = (await import(LMDB_DIR === undefined ? 'lmdb' : `${LMDB_DIR}/node-index.js`)) as typeof import('lmdb');

interface ChildConfig {
  readonly path: string;
  readonly options: 'engine' | 'store';
  readonly seed: number;
  /** 'fill': write until a commit fails, then exit 1; 'resume': write `batches` batches per actor (at most runMs), then exit 0. */
  readonly mode: 'fill' | 'resume';
  readonly runMs: number;
  readonly batches: number;
  /** Reads beside the writes, as the engine's threads do (on unless --reads false). */
  readonly reads: boolean;
  /** Outbox entries removed per commit at start (the engine: 256 re-published entries; scaled down to this loop's few). */
  readonly republishGroup: number;
  /** The share of outbox entries a run leaves behind (not acknowledged by the outcome stream yet). */
  readonly outboxLeft: number;
  /** How long the main thread holds a read transaction at most (ms). */
  readonly holdMs: number;
  /** Batches an actor has in flight (built, not yet committed) at most. */
  readonly pipeline: number;
  /** Events per batch at most while the disk fills. */
  readonly fillEvents: number;
  /** Events per batch at most after the growth (each a few member records; the batch's outbox value grows with it). */
  readonly resumeEvents: number;
  readonly open?: Record<string, unknown>;
}


async function openOptions(config: ChildConfig): Promise<Record<string, unknown>> {
  if (config.options === 'store') {
    const { LMDB_OPEN_OPTIONS } = await import('../src/store/lmdb.js');
    return { ...LMDB_OPEN_OPTIONS };
  }
  return config.open ?? {};
}

/** The engine's default map (64 GiB): the disk fills long before it. */
const MAP_SIZE = 2 ** 36;

function openRoot(config: ChildConfig, options: Record<string, unknown>): RootDatabase {
  return open({ path: config.path, maxDbs: 16, mapSize: MAP_SIZE, compression: false, ...options });
}

/**
 * One actor thread, as plain JavaScript (a Node 20 worker thread gets no tsx
 * ESM hooks), as in scripts/lmdb-kill-loop.ts; a failed commit is reported to
 * the main thread with lmdb-js's own error (its commitError), and 'stop' ends
 * the loop after the batch in flight.
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
let stopping = false;
parentPort.on('message', (message) => { if (message === 'stop') stopping = true; });
async function cause(error) {
  const pending = error && error.commitError;
  if (!pending || typeof pending.then !== 'function') return error;
  return Promise.race([pending.then(() => error, (real) => real), new Promise((r) => setTimeout(() => r(error), 1000))]);
}
(async () => {
  const config = workerData;
  const root = open({ path: config.path, maxDbs: 16, mapSize: config.mapSize, compression: false, ...config.open });
  const records = root.openDB({ name: 'members', encoding: 'msgpack' });
  const outbox = root.openDB({ name: 'outbox', encoding: 'binary' });
  const random = prng(config.seed * 31 + config.actor);
  const boot = Date.now();
  let batch = 0;
  let published = [];
  const inFlight = [];
  try {
    while (!stopping && batch < config.maxBatches) {
      batch += 1;
      const events = 1 + Math.floor(random() * config.maxEvents);
      const writes = [];
      for (let index = 0; index < events; index++) {
        const member = 'm-' + Math.floor(random() * 20000);
        const partition = member.length % 64;
        // As an actor does: the member's state and the event's idempotency record are read first (a read
        // transaction on a snapshot that the write thread's commits leave behind).
        if (config.reads) {
          records.get([partition, member, 0]);
          records.get([partition, member, 2, 'e-' + boot + '-' + config.actor + '-' + (batch - 1) + '-' + index]);
        }
        writes.push(records.put([partition, member, 0], { memberId: member, spendable: Math.floor(random() * 1e6), lots: Array.from({ length: Math.floor(random() * 12) }, () => random()) }));
        writes.push(records.put([partition, member, 1, batch * 10000 + index], { kind: 'earn', points: index, text: 'x'.repeat(Math.floor(random() * 200)) }));
        writes.push(records.put([partition, member, 2, 'e-' + boot + '-' + config.actor + '-' + batch + '-' + index], new Uint8Array(100 + Math.floor(random() * 300))));
      }
      const key = [boot, config.actor, batch];
      writes.push(outbox.put(key, new Uint8Array(events * (200 + Math.floor(random() * 400)))));
      for (const old of published) writes.push(outbox.remove(old));
      // Every write's promise is awaited (a failed commit rejects them all), up to config.pipeline
      // batches later: as an actor does, the next batch is read and built while this one commits.
      const done = batch;
      const committed = Promise.all(writes).then(() => root.flushed).then(() => parentPort.postMessage({ committed: done }));
      committed.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
      inFlight.push(committed);
      if (inFlight.length >= config.pipeline) await inFlight.shift();
      published = random() < 1 - config.outboxLeft ? [key] : []; // the rest stays until a start re-publishes it
    }
    await Promise.all(inFlight);
  } catch (error) {
    const real = await cause(error);
    parentPort.postMessage({ failed: { code: real && real.code, message: String(real && real.message || real) } });
  }
  await root.close().catch(() => undefined);
  parentPort.postMessage({ done: batch });
  parentPort.close(); // the 'message' listener would keep the thread alive
})().catch((error) => { parentPort.postMessage({ failed: { code: 'worker', message: String(error && error.stack || error) } }); });
`;

async function child(config: ChildConfig): Promise<void> {
  const options = await openOptions(config);
  const root = openRoot(config, options);
  const outbox = root.openDB({ name: 'outbox', encoding: 'binary' });
  let failure: { code: unknown; message: string } | undefined;
  // As the engine starts (Engine.republishOutbox): every outbox entry left by the last run is read
  // and re-published, and the entries are removed a group at a time, each group committed while the
  // range read over the outbox is still open (its read transaction holds the snapshot of the start).
  try {
    let removed = 0;
    let group: unknown[] = [];
    const removeGroup = async (): Promise<void> => {
      let last: Promise<unknown> = Promise.resolve();
      for (const key of group.splice(0)) last = outbox.remove(key as [number, number, number]);
      await last;
      await root.flushed;
    };
    for (const { key } of outbox.getRange({})) {
      group.push(key);
      removed += 1;
      if (group.length >= config.republishGroup) await removeGroup();
    }
    await removeGroup();
    process.stdout.write(`start-commit-ok ${removed}\n`);
  } catch (error) {
    const pending = (error as { commitError?: Promise<unknown> }).commitError;
    const real = (pending === undefined ? error : await pending.then(() => error, (cause: unknown) => cause)) as { code?: unknown; message?: string };
    failure = { code: real.code, message: String(real.message ?? real) };
  }
  const workers: Worker[] = [];
  const committed = [0, 0];
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    for (const worker of workers) worker.postMessage('stop');
    // An orderly stop that does not finish (seen with overlappingSync on after a failed write): out anyway.
    setTimeout(() => {
      process.stdout.write(`batches ${committed.join(' ')} (the writers did not stop within 10 s)\n`);
      if (failure !== undefined) process.stdout.write(`commit-failed ${String(failure.code)} ${failure.message}\n`);
      process.exit(failure === undefined ? 4 : 1);
    }, 10_000).unref();
  };
  if (failure === undefined) {
    const lmdbPath = LMDB_DIR === undefined ? createRequire(import.meta.url).resolve('lmdb') : `${LMDB_DIR}/dist/index.cjs`;
    for (let actor = 0; actor < 2; actor++) {
      const worker = new Worker(ACTOR_THREAD, { eval: true, workerData: { ...config, actor, open: options, mapSize: MAP_SIZE, lmdbPath, maxBatches: config.mode === 'resume' ? config.batches : Infinity, maxEvents: config.mode === 'resume' ? config.resumeEvents : config.fillEvents } });
      worker.on('message', (message: { committed?: number; failed?: { code: unknown; message: string } }) => {
        if (message.committed !== undefined) committed[actor] = message.committed;
        if (message.failed !== undefined) {
          failure ??= message.failed;
          stop();
        }
      });
      worker.on('error', (error) => {
        failure ??= { code: 'worker-error', message: error.message };
        stop();
      });
      workers.push(worker);
    }
    // The main thread reads too (the engine's API queries, sweeps, metrics): read transactions held
    // for up to holdMs while the actors commit, one after the other.
    const members = root.openDB({ name: 'members', encoding: 'msgpack' });
    const random = prng(config.seed);
    let reading = config.reads;
    const readLoop = async (): Promise<void> => {
      while (reading) {
        const txn = root.useReadTransaction();
        for (const _ of members.getKeys({ limit: 20, transaction: txn })) void _;
        await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * config.holdMs)));
        txn.done();
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    };
    const readerDone = readLoop();
    if (config.mode === 'resume') setTimeout(stop, config.runMs).unref();
    else setTimeout(stop, 120_000).unref(); // the disk never filled: give up (reported as a fill without failure)
    await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('exit', resolve))));
    reading = false;
    await readerDone;
  }
  await root.close().catch(() => undefined);
  process.stdout.write(`batches ${committed.join(' ')}\n`);
  if (failure !== undefined) {
    process.stdout.write(`commit-failed ${String(failure.code)} ${failure.message}\n`);
    process.exit(1);
  }
  process.stdout.write('clean-stop\n');
  process.exit(0);
}

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly out: string;
}

/** The child in flight, for a parent stopped by a signal. */
const current: { child?: ReturnType<typeof spawn> } = {};

/** --log-dir <dir>: every child's output is kept there (<iteration>-<run>.log). */
let logDir: string | undefined;

function runChild(config: ChildConfig, name: string): Promise<Run> {
  const proc = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--child', JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  proc.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  current.child = proc;
  return new Promise((resolve) =>
    proc.once('close', (code, signal) => {
      if (logDir !== undefined) writeFileSync(join(logDir, `${name}.log`), `${out}\nexit ${code} signal ${signal}\n`);
      resolve({ code, signal, out });
    }),
  );
}

/**
 * --check <program>: run `<program> <environment dir>` after every start, e.g. a page-accounting
 * checker built against lmdb-js's mdb.c; a non-zero exit is a check failure (its output is shown).
 */
function check(program: string | undefined, path: string): string | undefined {
  if (program === undefined) return undefined;
  try {
    execFileSync(program, [path], { stdio: 'pipe' });
    return undefined;
  } catch (error) {
    const failed = error as { status?: number; stdout?: Buffer; stderr?: Buffer };
    return `check exit ${failed.status}: ${(failed.stdout?.toString() ?? '') + (failed.stderr?.toString() ?? '')}`.trim();
  }
}

const ASSERTION = /Assertion 'freelist_written_start >= mop_len' failed in mdb_freelist_save/;
const LMDB_TROUBLE = /MDB_|Assertion|freelist|free-space|LMDB-ERROR|Uncaught/i;

function mount(dir: string, sizeMb: number): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m`, 'tmpfs', dir], { stdio: 'pipe' });
}

function unmount(dir: string): void {
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      execFileSync('umount', [dir], { stdio: 'pipe' });
      return;
    } catch {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200); // still busy: a child on its way out
    }
  }
  try {
    execFileSync('umount', ['-l', dir], { stdio: 'pipe' }); // detach now, freed when the last file closes
  } catch {
    // not mounted
  }
}

async function parent(): Promise<void> {
  const args = new Map<string, string>();
  for (let index = 2; index < process.argv.length; index += 2) args.set(process.argv[index]!.replace(/^--/, ''), process.argv[index + 1] ?? '');
  if (process.getuid?.() !== 0 && !args.has('replay')) {
    console.log('lmdb disk-full loop: needs root (mount -t tmpfs)');
    process.exit(2);
  }
  const iterations = Number(args.get('iterations') ?? 30);
  const sizeMb = Number(args.get('size-mb') ?? 30);
  const growMb = Number(args.get('grow-mb') ?? 200);
  const runMs = Number(args.get('run-ms') ?? 10_000);
  const batches = Number(args.get('batches') ?? 20);
  const options = (args.get('options') ?? 'store') as 'engine' | 'store';
  const seed = Number(args.get('seed') ?? Date.now() % 100_000);
  logDir = args.get('log-dir');
  if (logDir !== undefined) mkdirSync(logDir, { recursive: true });
  const openExtra = args.has('open') ? { open: JSON.parse(args.get('open')!) as Record<string, unknown> } : {};
  console.log(`lmdb disk-full loop: ${iterations} iterations, tmpfs ${sizeMb} MiB grown to ${growMb} MiB, resume ${batches} batches per actor (at most ${runMs} ms), options ${options} ${args.get('open') ?? ''}, seed ${seed}, lmdb ${LMDB_DIR ?? 'node_modules/lmdb'}`);
  const counts = { iterations: 0, aborts: 0, assertionAborts: 0, otherFailures: 0, fillWithoutFailure: 0, secondStartFailures: 0, checkFailures: 0 };
  const checker = args.get('check');
  const checked = (path: string, what: string): string => {
    const failure = check(checker, path);
    if (failure === undefined) return '';
    counts.checkFailures += 1;
    return `\n  ${what}: ${failure}`;
  };
  const fillErrors = new Map<string, number>();
  const started = Date.now();
  let stop = false;
  let stoppedBy: string | undefined;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      // Stopped from outside (Ctrl-C, timeout): the child goes, the iteration's cleanup unmounts, then the summary.
      stop = true;
      stoppedBy = signal;
      current.child?.kill('SIGKILL');
    });
  }
  /** What every child is run with (ChildConfig without path, seed and mode). */
  const settings = {
    options,
    runMs,
    batches,
    reads: args.get('reads') !== 'false',
    republishGroup: Number(args.get('republish-group') ?? 1),
    outboxLeft: Number(args.get('outbox-left') ?? 0.9),
    holdMs: Number(args.get('hold-ms') ?? 20),
    fillEvents: Number(args.get('fill-events') ?? 1024),
    resumeEvents: Number(args.get('resume-events') ?? 1024),
    pipeline: Number(args.get('pipeline') ?? 1),
    ...openExtra,
  };
  const replay = args.get('replay');
  for (let iteration = 1; iteration <= iterations && !stop; iteration++) {
    if (replay !== undefined) {
      // The first start after growth again, on a fresh copy of a kept environment (no tmpfs needed).
      const copy = mkdtempSync('/tmp/lmdb-diskfull-replay-');
      try {
        execFileSync('cp', ['-a', replay, join(copy, 'state')]);
        counts.iterations += 1;
        const run = await runChild({ ...settings, path: join(copy, 'state'), seed: seed * 1000 + iteration, mode: 'resume' }, `${iteration}-replay`);
        if (stop && stoppedBy !== undefined) {
          counts.iterations -= 1;
          continue;
        }
        const ok = run.code === 0 && run.signal === null && !LMDB_TROUBLE.test(run.out);
        if (!ok) {
          if (run.signal === 'SIGABRT') {
            counts.aborts += 1;
            if (ASSERTION.test(run.out)) counts.assertionAborts += 1;
          } else counts.otherFailures += 1;
          console.log(`replay ${iteration}: FAILED (${run.signal ?? `exit ${run.code}`}) ${/Freelist record not found[^\n]*/.exec(run.out)?.[0] ?? run.out.slice(-300)}`);
        }
        const checkLine = checked(join(copy, 'state'), 'after the start');
        if (checkLine !== '') console.log(`replay ${iteration}:${checkLine}`);
        else if (ok && iteration % 10 === 0) console.log(`replay ${iteration}: ok (${((Date.now() - started) / 1000).toFixed(0)} s)`);
      } finally {
        rmSync(copy, { recursive: true, force: true });
      }
      continue;
    }
    const dir = mkdtempSync('/tmp/lmdb-diskfull-');
    const path = join(dir, 'state');
    let mounted = false;
    try {
      mount(dir, sizeMb);
      mounted = true;
      mkdirSync(path);
      counts.iterations += 1;
      const base = { ...settings, path };
      const fill = await runChild({ ...base, seed: seed * 1000 + iteration, mode: 'fill' }, `${iteration}-fill`);
      if (stop && stoppedBy !== undefined) {
        counts.iterations -= 1; // interrupted, not counted
        continue;
      }
      const failedLine = /commit-failed (\S+)(.*)/.exec(fill.out);
      const failed = failedLine?.[1];
      if (fill.code !== 1 || failed === undefined) {
        if (fill.signal !== null || /Assertion/.test(fill.out)) {
          counts.otherFailures += 1;
          console.log(`iteration ${iteration}: the filling run died (${fill.signal ?? fill.code})\n${fill.out.slice(-1500)}`);
        } else {
          counts.fillWithoutFailure += 1;
          console.log(`iteration ${iteration}: the disk did not fill (exit ${fill.code})\n${fill.out.slice(-500)}`);
        }
        continue;
      }
      fillErrors.set(failed, (fillErrors.get(failed) ?? 0) + 1);
      const fileMb = (statSync(join(path, 'data.mdb')).size / 2 ** 20).toFixed(1);
      // --keep true: the environment as the full disk left it, kept when the first start after growth fails.
      const kept = args.get('keep') === 'true' ? mkdtempSync('/tmp/lmdb-diskfull-kept-') : undefined;
      if (kept !== undefined) execFileSync('cp', ['-a', path, kept]);
      execFileSync('mount', ['-o', `remount,size=${growMb}m`, dir], { stdio: 'pipe' });

      const first = await runChild({ ...base, seed: seed * 1000 + iteration + 500, mode: 'resume' }, `${iteration}-first`);
      if (stop && stoppedBy !== undefined) {
        counts.iterations -= 1;
        if (kept !== undefined) rmSync(kept, { recursive: true, force: true });
        continue;
      }
      const firstOk = first.code === 0 && first.signal === null && !LMDB_TROUBLE.test(first.out);
      let line = `iteration ${iteration}: fill failed with ${failed} (${failedLine![2]!.trim().slice(0, 80)}) at ${fileMb} MiB; first start after growth `;
      if (firstOk) line += `ok (batches ${/batches (.*)/.exec(first.out)?.[1] ?? '?'})${checked(path, 'after the first start')}`;
      else {
        const assertion = ASSERTION.test(first.out);
        if (first.signal === 'SIGABRT') {
          counts.aborts += 1;
          if (assertion) counts.assertionAborts += 1;
        } else counts.otherFailures += 1;
        const notFound = /Freelist record not found[^\n]*/.exec(first.out)?.[0];
        line += `FAILED (${first.signal ?? `exit ${first.code}`}${assertion ? ', free-list assertion' : ''})${notFound === undefined ? '' : `: ${notFound}`}\n${first.out.split('\n').filter((l) => LMDB_TROUBLE.test(l)).slice(-8).join('\n')}`;
        const second = await runChild({ ...base, seed: seed * 1000 + iteration + 700, mode: 'resume' }, `${iteration}-second`);
        const secondOk = second.code === 0 && second.signal === null && !LMDB_TROUBLE.test(second.out);
        if (!secondOk) counts.secondStartFailures += 1;
        line += `\n  second start: ${secondOk ? 'ok' : `FAILED (${second.signal ?? `exit ${second.code}`})\n${second.out.slice(-1000)}`}${checked(path, 'after the second start')}`;
      }
      if (kept !== undefined) {
        if (firstOk) rmSync(kept, { recursive: true, force: true });
        else line += `\n  the environment as the full disk left it: ${kept}/state`;
      }
      console.log(`${line} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
      if (!firstOk && args.get('stop-on-abort') === 'true') stop = true;
    } catch (error) {
      counts.otherFailures += 1;
      console.log(`iteration ${iteration}: ${(error as Error).message}`);
    } finally {
      if (mounted) unmount(dir);
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (stoppedBy !== undefined) console.log(`stopped by ${stoppedBy}`);
  const errors = [...fillErrors].map(([code, n]) => `${code}×${n}`).join(' ');
  console.log(
    `SUMMARY: ${counts.iterations} iterations, ${counts.aborts} aborted first starts (${counts.assertionAborts} of them the free-list assertion), ` +
      `${counts.otherFailures} other failures, ${counts.secondStartFailures} failed second starts, ${counts.fillWithoutFailure} fills without a failed commit, ` +
      `${checker === undefined ? 'no check' : `${counts.checkFailures} failed checks`}; ` +
      `fill errors ${errors || 'none'}; ${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
  process.exit(stoppedBy !== undefined ? 130 : counts.aborts + counts.otherFailures + counts.secondStartFailures + counts.checkFailures === 0 ? 0 : 1);
}

if (process.argv[2] === '--child') await child(JSON.parse(process.argv[3]!) as ChildConfig);
else await parent();
