import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import autocannon from 'autocannon';
import { findFreePort } from '../../src/transport/nats-server.js';
import { connectTest, startTestNatsServer, testNatsServerBinary } from '../../test/helpers/nats-server.js';
import { summarizeProfiles, type ProfileWindow } from './profile.js';

/**
 * API bench: autocannon against the HTTP API of a real engine while it consumes.
 *
 *   npx tsx bench/api/run.ts [--members 10000] [--purchases 3] [--background-rate 2000]
 *                            [--duration-s 10] [--connections 50] [--wait-phase true]
 *                            [--program config/programs/retail.yaml] [--actors 2] [--cpu-prof false]
 *                            [--phases http-floor,http-floor-loaded,wallet,events,events-wait] [--warmup-s 2] [--drain-s 60]
 *                            [--engine-env LOYALTY_NAME=value,...] [--keep-prof <dir>]
 *
 * 1. starts a nats-server (free port, temp dir) and the engine as a child process (node --import tsx
 *    src/cli/main.ts start, with API tokens), waits for /health;
 * 2. seeds --members members with --purchases purchases each, published straight to JetStream
 *    (loyalty.tx.<memberId>, core publish), and waits until the engine has acked them all;
 * 3. starts a background publisher process (bench/api/publisher.ts) at --background-rate purchases/s,
 *    so the engine consumes during every measurement;
 * 4. runs autocannon, each phase at most 15 s: (a) GET /v1/members/:id/wallet over random seeded ids,
 *    (b) POST /v1/events without wait (unique ids), (c) POST /v1/events?wait=true. Before the background
 *    load starts, the `http-floor` phase measures a bare fastify serving a fixed body of the wallet's size
 *    (bench/api/floor-server.ts): what one Node thread can answer on this machine before any engine work.
 *    Once the background load runs, `http-floor-loaded` measures the same bare server again: what any
 *    HTTP server gets of the 2 cores while the engine consumes, the ceiling for the engine's own phases.
 *    Before each engine phase the consumer is let drain (at most --drain-s) to under one second of
 *    background events, so a phase does not inherit the backlog the previous one's submissions left;
 * 5. prints a table and writes bench/results/api-<timestamp>.json. With --cpu-prof true the engine
 *    runs under node --cpu-prof and the report lists where its CPU went (main thread and actors).
 *
 * CPU of the engine, nats-server, the publisher and this process (autocannon) is read from /proc per
 * phase, with the whole machine's busy time: on a 2-core machine they all share the cores.
 */

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const TOKEN_READ = 'bench-read-token-0123456789';
const TOKEN_WRITE = 'bench-write-token-0123456789';
const PHASE_SECONDS_MAX = 15;
/** Every phase, in the order a run takes them; the http-floor ones measure a bare server, not the engine. */
const PHASES = ['http-floor', 'http-floor-loaded', 'wallet', 'events', 'events-wait'] as const;
const isFloorPhase = (name: string) => name.startsWith('http-floor');

interface Options {
  members: number;
  purchases: number;
  backgroundRate: number;
  durationS: number;
  connections: number;
  waitPhase: boolean;
  program: string;
  actors: number;
  cpuProf: boolean;
  /** With --cpu-prof: copy the .cpuprofile files here (else they go with the temp dir). */
  keepProf: string | undefined;
  warmupS: number;
  drainS: number;
  phases: string[];
  /** Extra LOYALTY_* settings for the engine, e.g. LOYALTY_BATCH_AGE_MS_MAX=20. */
  engineEnv: Record<string, string>;
}

function parseOptions(argv: readonly string[]): Options {
  const options: Options = {
    members: 10_000,
    purchases: 3,
    backgroundRate: 2_000,
    durationS: 10,
    connections: 50,
    waitPhase: true,
    program: 'config/programs/retail.yaml',
    actors: 2,
    cpuProf: false,
    keepProf: undefined,
    warmupS: 2,
    drainS: 60,
    phases: [...PHASES],
    engineEnv: {},
  };
  for (let index = 0; index < argv.length; index += 2) {
    const name = argv[index]!;
    const value = argv[index + 1];
    if (name === '--help') {
      process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]!.split('/**')[1]!.replace(/^ \* ?/gm, ''));
      process.exit(0);
    }
    if (value === undefined) throw new Error(`${name} needs a value`);
    const number = Number(value);
    switch (name) {
      case '--members': options.members = number; break;
      case '--purchases': options.purchases = number; break;
      case '--background-rate': options.backgroundRate = number; break;
      case '--duration-s': options.durationS = number; break;
      case '--connections': options.connections = number; break;
      case '--wait-phase': options.waitPhase = value === 'true'; break;
      case '--program': options.program = value; break;
      case '--actors': options.actors = number; break;
      case '--cpu-prof': options.cpuProf = value === 'true'; break;
      case '--keep-prof': options.keepProf = value; break;
      case '--warmup-s': options.warmupS = number; break;
      case '--drain-s': options.drainS = number; break;
      case '--phases': options.phases = value.split(',').filter((phase) => phase !== ''); break;
      case '--engine-env':
        for (const pair of value.split(',').filter((item) => item !== '')) {
          const [key, ...rest] = pair.split('=');
          if (!/^LOYALTY_[A-Z0-9_]+$/.test(key ?? '') || rest.length === 0) throw new Error(`--engine-env: expected LOYALTY_NAME=value[,...], got ${pair}`);
          options.engineEnv[key!] = rest.join('=');
        }
        break;
      default: throw new Error(`unknown option ${name} (--help)`);
    }
  }
  for (const [name, value] of Object.entries(options)) {
    if (typeof value === 'number' && (!Number.isFinite(value) || value < 0)) throw new Error(`--${name}: not a non-negative number`);
  }
  if (options.durationS < 1 || options.durationS > PHASE_SECONDS_MAX) throw new Error(`--duration-s must be 1..${PHASE_SECONDS_MAX} (shared machine)`);
  if (options.members < 1) throw new Error('--members must be at least 1');
  for (const phase of options.phases) if (!(PHASES as readonly string[]).includes(phase)) throw new Error(`--phases: unknown phase ${phase}`);
  if (!options.waitPhase) options.phases = options.phases.filter((phase) => phase !== 'events-wait');
  return options;
}

// ---- /proc sampling ----

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** CPU seconds of each thread of a process (/proc/<pid>/task/<tid>/stat); the main thread's tid is the pid. */
function threadCpuSeconds(pid: number | undefined): Record<string, number> {
  if (pid === undefined) return {};
  const threads: Record<string, number> = {};
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
        threads[tid] = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
      } catch {
        // the thread ended
      }
    }
  } catch {
    // the process ended
  }
  return threads;
}

interface ApiThreadCounters {
  busy: number | undefined;
  cpu: number | undefined;
  /** Wallet reads answered from a kept body and rendered (loyalty_http_wallet_reads_total). */
  walletCached: number | undefined;
  walletRendered: number | undefined;
}

const NO_API_COUNTERS: ApiThreadCounters = { busy: undefined, cpu: undefined, walletCached: undefined, walletRendered: undefined };

/** The API thread's busy and CPU seconds (loyalty_http_thread_*_seconds_total at /metrics) and wallet reads; undefined for an engine without them. */
async function apiThreadSeconds(base: string, token: string): Promise<ApiThreadCounters> {
  try {
    const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    const value = (name: string, labels = '(?:\\{[^}]*\\})?') => {
      const match = new RegExp(`^${name}${labels} ([0-9.eE+-]+)$`, 'm').exec(text);
      return match === null ? undefined : Number(match[1]);
    };
    return {
      busy: value('loyalty_http_thread_busy_seconds_total'),
      cpu: value('loyalty_http_thread_cpu_seconds_total'),
      walletCached: value('loyalty_http_wallet_reads_total', '\\{answer="cached"\\}'),
      walletRendered: value('loyalty_http_wallet_reads_total', '\\{answer="rendered"\\}'),
    };
  } catch {
    return NO_API_COUNTERS;
  }
}

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = line.reduce((sum, value) => sum + value, 0);
  const idle = (line[3] ?? 0) + (line[4] ?? 0);
  return { busy: total - idle, total };
}

interface Snapshot {
  atMs: number;
  cpu: Record<string, number>;
  engineThreads: Record<string, number>;
  api: ApiThreadCounters;
  machine: { busy: number; total: number };
  ackFloor: number;
  pending: number;
}

// ---- the engine ----

interface Engine {
  child: ChildProcess;
  pid: number;
  port: number;
  exited: Promise<number | null>;
  output(): string;
}

async function startEngine(natsUrl: string, dataDir: string, options: Options, profileDir: string | undefined): Promise<Engine> {
  const port = await findFreePort();
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('LOYALTY_') && name !== 'NODE_OPTIONS') env[name] = value;
  Object.assign(env, {
    LOYALTY_NATS_URL: natsUrl,
    LOYALTY_DATA_DIR: dataDir,
    LOYALTY_HTTP_PORT: String(port),
    LOYALTY_PROGRAM_FILE: resolve(ROOT, options.program),
    LOYALTY_LOG_LEVEL: 'warn',
    LOYALTY_ACTORS: String(options.actors),
    LOYALTY_API_TOKENS: `read:${TOKEN_READ}:bench-read,write:${TOKEN_WRITE}:bench-write`,
    ...options.engineEnv,
  });
  // BENCH_ENGINE_NODE_ARGS adds node flags to the engine, as in the main bench (bench/harness/engine.ts).
  const extra = (process.env.BENCH_ENGINE_NODE_ARGS ?? '').split(/\s+/).filter((arg) => arg !== '');
  const flags = [...extra, ...(profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir])];
  const child = spawn(process.execPath, [...flags, '--import', 'tsx', 'src/cli/main.ts', 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && child.exitCode === null) {
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then((response) => response.status === 200, () => false);
    if (ok) return { child, pid: child.pid!, port, exited, output: () => output };
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`engine did not become ready:\n${output}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

async function consumer(jsm: JetStreamManager): Promise<{ ackFloor: number; pending: number }> {
  const info = await jsm.consumers.info('LOYALTY_TX', 'loyalty-engine');
  return { ackFloor: Math.max(info.ack_floor.stream_seq, (info.config.opt_start_seq ?? 1) - 1), pending: info.num_pending + info.num_ack_pending };
}

// ---- phases ----

interface PhaseResult {
  name: string;
  request: string;
  connections: number;
  durationS: number;
  requestsPerSecondMean: number;
  requestsPerSecondStddev: number;
  requestsTotal: number;
  latencyMs: { mean: number; p50: number; p90: number; p97_5: number; p99: number; max: number };
  responses2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** % of one core; machineBusy is % of all cores; others = what other processes of the machine used, % of one core. */
  /** floorServer: the bare fastify of http-floor-loaded (in http-floor, its CPU is in the engine column: no engine work then). */
  cpuPercent: { engine: number; natsServer: number; publisher: number; benchClient: number; floorServer?: number; others: number; machineBusy: number };
  /**
   * The engine per thread, % of one core: its main thread (ingest; the tid is the pid), the HTTP API
   * thread's busy time (from its own metric, so null for an engine without an API thread or in the
   * floor phase), and every thread's CPU by tid, busiest first.
   */
  engineThreads: {
    mainCpu: number;
    apiBusy: number | null;
    apiCpu: number | null;
    apiCpuMicrosecondsPerRequest: number | null;
    /** Share of the phase's wallet reads answered from a kept body (%), null when not reported. */
    walletCachedPercent: number | null;
    byTid: { tid: string; cpu: number }[];
  };
  engineConsumedPerSecond: number;
  consumerLagAtEnd: number;
}

function percentOf(delta: number, seconds: number): number {
  return Math.round((delta / seconds) * 1000) / 10;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const runId = Date.now().toString(36);
  const startedAt = new Date();
  const log = (message: string) => process.stderr.write(`[api-bench] ${message}\n`);
  const children: ChildProcess[] = [];
  const cleanups: (() => void)[] = [];
  const onSignal = () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    for (const cleanup of cleanups) cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);

  const machine = {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryBytes: totalmem(),
    node: process.version,
    natsServer: await natsServerVersion(),
    loadAverageAtStart: loadavg().map((value) => Math.round(value * 100) / 100),
  };
  log(`machine: ${machine.cores} × ${machine.cpuModel}, load average ${machine.loadAverageAtStart.join(' ')}`);

  const server = await startTestNatsServer();
  const nc = await connectTest(server.url, { noAsyncTraces: true });
  const dataDir = mkdtempSync(join(tmpdir(), 'loyalty-api-bench-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const profileDir = options.cpuProf ? mkdtempSync(join(tmpdir(), 'loyalty-api-bench-prof-')) : undefined;
  if (profileDir !== undefined) cleanups.push(() => rmSync(profileDir, { recursive: true, force: true }));

  let engine: Engine | undefined;
  let publisher: ChildProcess | undefined;
  let stopping = false;
  try {
    engine = await startEngine(server.url, dataDir, options, profileDir);
    children.push(engine.child);
    const base = `http://127.0.0.1:${engine.port}`;
    const jsm = await jetstreamManager(nc);
    log(`engine pid ${engine.pid} on ${base}, nats-server pid ${server.pid}`);

    // ---- seed ----
    const seedStarted = performance.now();
    const encoder = new TextEncoder();
    const occurredAt = new Date(Date.now() - 3_600_000).toISOString();
    let seeded = 0;
    for (let round = 0; round < options.purchases; round++) {
      for (let member = 0; member < options.members; member++) {
        const memberId = `m${member}`;
        const event = { id: `seed-${round}`, memberId, type: 'purchase', occurredAt, amountMinor: 1_000 + ((member * 7919 + round * 104_729) % 30_000), currency: 'EUR' };
        nc.publish(`loyalty.tx.${memberId}`, encoder.encode(JSON.stringify(event)));
        seeded += 1;
        if (seeded % 1_000 === 0) await nc.flush();
      }
    }
    await nc.flush();
    let lastSequence = 0;
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(50)) {
      lastSequence = (await jsm.streams.info('LOYALTY_TX')).state.last_seq;
      if (lastSequence >= seeded) break;
    }
    if (lastSequence < seeded) throw new Error(`the stream stored ${lastSequence} of ${seeded} seed events`);
    for (const deadline = Date.now() + 120_000; ; await sleep(100)) {
      if ((await consumer(jsm)).ackFloor >= lastSequence) break;
      if (Date.now() > deadline) throw new Error('the engine did not consume the seed events within 120 s');
    }
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    log(`seeded ${seeded} purchases for ${options.members} members in ${seedSeconds.toFixed(1)} s (${Math.round(seeded / seedSeconds)}/s published and consumed)`);
    const check = await fetch(`${base}/v1/members/m0/wallet`, { headers: { authorization: `Bearer ${TOKEN_READ}` } });
    const walletBody = await check.text();
    if (check.status !== 200) throw new Error(`wallet of m0: HTTP ${check.status} ${walletBody}`);

    let sequence = 0;
    const purchaseBody = (prefix: string) => {
      const member = Math.floor(Math.random() * options.members);
      sequence += 1;
      return JSON.stringify({ id: `${prefix}-${runId}-${sequence}`, memberId: `m${member}`, type: 'purchase', occurredAt: new Date().toISOString(), amountMinor: 2_500, currency: 'EUR' });
    };
    const walletRequest = (request: Record<string, unknown>) => ({ ...request, method: 'GET', path: `/v1/members/m${Math.floor(Math.random() * options.members)}/wallet` });
    const phases: Record<string, { request: string; token: string; setup: (request: Record<string, unknown>) => Record<string, unknown> }> = {
      'http-floor': {
        request: `GET /v1/members/:id/wallet on a bare fastify returning a fixed ${walletBody.length}-byte body (no engine)`,
        token: TOKEN_READ,
        setup: walletRequest,
      },
      'http-floor-loaded': {
        request: `the same bare fastify (${walletBody.length}-byte body) while the engine consumes the background load`,
        token: TOKEN_READ,
        setup: walletRequest,
      },
      wallet: { request: 'GET /v1/members/:id/wallet (random seeded id)', token: TOKEN_READ, setup: walletRequest },
      events: {
        request: 'POST /v1/events (purchase, unique id, no wait)',
        token: TOKEN_WRITE,
        setup: (request) => ({ ...request, method: 'POST', path: '/v1/events', body: purchaseBody('api') }),
      },
      'events-wait': {
        request: 'POST /v1/events?wait=true (purchase, unique id)',
        token: TOKEN_WRITE,
        setup: (request) => ({ ...request, method: 'POST', path: '/v1/events?wait=true', body: purchaseBody('apiw') }),
      },
    };

    const runAutocannon = (name: string, url: string, seconds: number) => {
      const phase = phases[name]!;
      return autocannon({
        url,
        connections: options.connections,
        duration: seconds,
        headers: { authorization: `Bearer ${phase.token}`, 'content-type': 'application/json' },
        requests: [{ setupRequest: phase.setup as never }],
        timeout: 10,
      });
    };

    const results: PhaseResult[] = [];
    const windows: ProfileWindow[] = [];
    const nowUs = () => Number(process.hrtime.bigint() / 1000n);
    /** One measured phase: autocannon for durationS, with CPU per process and the engine's consumption around it. */
    const measure = async (name: string, url: string, pids: Record<string, number | undefined>) => {
      log(`phase ${name}: ${phases[name]!.request}, ${options.connections} connections, ${options.durationS} s`);
      const onEngine = !isFloorPhase(name);
      const snapshot = async (): Promise<Snapshot> => {
        const state = await consumer(jsm);
        const api = onEngine ? await apiThreadSeconds(url, TOKEN_READ) : NO_API_COUNTERS;
        return {
          atMs: performance.now(),
          cpu: Object.fromEntries(Object.entries(pids).map(([key, pid]) => [key, cpuSeconds(pid)])),
          engineThreads: threadCpuSeconds(pids.engine),
          api,
          machine: machineTicks(),
          ackFloor: state.ackFloor,
          pending: state.pending,
        };
      };
      const before = await snapshot();
      const fromUs = nowUs();
      const result = await runAutocannon(name, url, options.durationS);
      windows.push({ name, fromUs, toUs: nowUs() });
      const after = await snapshot();
      const seconds = (after.atMs - before.atMs) / 1000;
      const cpu = (key: string) => percentOf((after.cpu[key] ?? 0) - (before.cpu[key] ?? 0), seconds);
      const machineDelta = { busy: after.machine.busy - before.machine.busy, total: after.machine.total - before.machine.total };
      const machineBusy = machineDelta.total > 0 ? machineDelta.busy / machineDelta.total : 0;
      const ours = cpu('engine') + cpu('natsServer') + cpu('publisher') + cpu('benchClient') + cpu('floorServer');
      results.push({
        name,
        request: phases[name]!.request,
        connections: options.connections,
        durationS: options.durationS,
        requestsPerSecondMean: Math.round(result.requests.mean),
        requestsPerSecondStddev: Math.round(result.requests.stddev),
        requestsTotal: result.requests.total,
        latencyMs: {
          mean: result.latency.mean,
          p50: result.latency.p50,
          p90: result.latency.p90,
          p97_5: result.latency.p97_5,
          p99: result.latency.p99,
          max: result.latency.max,
        },
        responses2xx: result['2xx'],
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
        cpuPercent: {
          engine: cpu('engine'),
          natsServer: cpu('natsServer'),
          publisher: cpu('publisher'),
          benchClient: cpu('benchClient'),
          ...(pids.floorServer === undefined ? {} : { floorServer: cpu('floorServer') }),
          others: Math.max(0, Math.round((machineBusy * cpus().length * 100 - ours) * 10) / 10),
          // Of all cores: 100 = every core busy.
          machineBusy: Math.round(machineBusy * 1000) / 10,
        },
        engineThreads: {
          mainCpu: percentOf((after.engineThreads[String(pids.engine)] ?? 0) - (before.engineThreads[String(pids.engine)] ?? 0), seconds),
          apiBusy: after.api.busy === undefined || before.api.busy === undefined ? null : percentOf(after.api.busy - before.api.busy, seconds),
          apiCpu: after.api.cpu === undefined || before.api.cpu === undefined ? null : percentOf(after.api.cpu - before.api.cpu, seconds),
          apiCpuMicrosecondsPerRequest:
            after.api.cpu === undefined || before.api.cpu === undefined || result.requests.total === 0
              ? null
              : Math.round(((after.api.cpu - before.api.cpu) * 1e6) / result.requests.total),
          walletCachedPercent: (() => {
            const { walletCached: cachedAfter, walletRendered: renderedAfter } = after.api;
            const { walletCached: cachedBefore, walletRendered: renderedBefore } = before.api;
            if (cachedAfter === undefined || renderedAfter === undefined || cachedBefore === undefined || renderedBefore === undefined) return null;
            const cached = cachedAfter - cachedBefore;
            const total = cached + renderedAfter - renderedBefore;
            return total === 0 ? null : Math.round((cached / total) * 1000) / 10;
          })(),
          byTid: Object.keys(after.engineThreads)
            .map((tid) => ({ tid, cpu: percentOf((after.engineThreads[tid] ?? 0) - (before.engineThreads[tid] ?? 0), seconds) }))
            .filter((thread) => thread.cpu > 0)
            .sort((left, right) => right.cpu - left.cpu),
        },
        engineConsumedPerSecond: Math.round((after.ackFloor - before.ackFloor) / seconds),
        consumerLagAtEnd: after.pending,
      });
      await sleep(1_000);
    };

    /** A bare fastify serving a fixed body of the wallet's size (bench/api/floor-server.ts); resolves once it listens. */
    const startFloor = async (): Promise<{ child: ChildProcess; base: string; stop(): Promise<void> }> => {
      const floorPort = await findFreePort();
      const floor = spawn(process.execPath, ['--import', 'tsx', 'bench/api/floor-server.ts', String(floorPort), walletBody], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(floor);
      let floorOutput = '';
      floor.stdout!.on('data', (chunk: Buffer) => (floorOutput += chunk.toString()));
      for (const deadline = Date.now() + 20_000; !floorOutput.includes('"ready"'); await sleep(20)) {
        if (Date.now() > deadline || floor.exitCode !== null) throw new Error(`the floor server did not start: ${floorOutput}`);
      }
      return {
        child: floor,
        base: `http://127.0.0.1:${floorPort}`,
        async stop() {
          floor.kill('SIGTERM');
          await new Promise((resolveExit) => floor.once('exit', resolveExit));
        },
      };
    };

    // ---- the HTTP floor: bare fastify, same body size, nothing else running but the idle engine ----
    if (options.phases.includes('http-floor')) {
      const floor = await startFloor();
      await runAutocannon('http-floor', floor.base, Math.max(1, options.warmupS));
      // The floor server's CPU goes in the engine column for this phase.
      await measure('http-floor', floor.base, { engine: floor.child.pid, natsServer: server.pid, benchClient: process.pid });
      await floor.stop();
    }

    // ---- background load ----
    publisher = spawn(process.execPath, ['--import', 'tsx', 'bench/api/publisher.ts', server.url, String(options.backgroundRate), String(options.members), runId], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(publisher);
    let publisherOutput = '';
    publisher.stdout!.on('data', (chunk: Buffer) => (publisherOutput += chunk.toString()));
    for (const deadline = Date.now() + 20_000; !publisherOutput.includes('"ready"'); await sleep(20)) {
      if (Date.now() > deadline || publisher.exitCode !== null) throw new Error(`the background publisher did not start: ${publisherOutput}`);
    }
    log(`background publisher: ${options.backgroundRate} purchases/s`);

    const enginePids = { engine: engine.pid, natsServer: server.pid, publisher: publisher.pid, benchClient: process.pid };
    const runningEngine = engine;
    void runningEngine.exited.then((code) => {
      if (!stopping) log(`the engine exited during the run (code ${code}):\n${runningEngine.output()}`);
    });
    const enginePhases = options.phases.filter((name) => !isFloorPhase(name));
    // ---- the same floor while the engine consumes: what is left of the machine for any HTTP server then ----
    if (options.phases.includes('http-floor-loaded')) {
      const floor = await startFloor();
      await runAutocannon('http-floor-loaded', floor.base, Math.max(1, options.warmupS));
      await measure('http-floor-loaded', floor.base, { ...enginePids, floorServer: floor.child.pid });
      await floor.stop();
    }
    if (options.warmupS > 0 && enginePhases.length > 0) {
      log(`warm-up: ${options.warmupS} s of wallet reads and ${options.warmupS} s of submissions (not measured)`);
      await runAutocannon('wallet', base, options.warmupS);
      await runAutocannon('events', base, options.warmupS);
      await sleep(1_000);
    }
    for (const name of enginePhases) {
      // Submissions faster than the engine consumes leave a backlog, which a following
      // ?wait=true phase would wait through: start every phase from a drained consumer.
      const drainStarted = performance.now();
      const lagMax = Math.max(200, options.backgroundRate);
      let lag = (await consumer(jsm)).pending;
      while (lag > lagMax && performance.now() - drainStarted < options.drainS * 1000) {
        await sleep(250);
        lag = (await consumer(jsm)).pending;
      }
      if (performance.now() - drainStarted > 500) log(`drained the consumer for ${((performance.now() - drainStarted) / 1000).toFixed(1)} s before ${name} (lag ${lag})`);
      await measure(name, base, enginePids);
    }

    stopping = true;
    publisher.kill('SIGTERM');
    await new Promise((resolveExit) => publisher!.once('exit', resolveExit));
    const background = JSON.parse(publisherOutput.trim().split('\n').pop() ?? '{}') as { published?: number; ratePerSecond?: number };

    engine.child.kill('SIGTERM');
    const exitCode = await Promise.race([engine.exited, sleep(60_000).then(() => 'timeout' as const)]);
    if (exitCode === 'timeout') engine.child.kill('SIGKILL');
    const profileFiles = profileDir === undefined ? [] : readdirSync(profileDir).filter((file) => file.endsWith('.cpuprofile')).map((file) => join(profileDir, file));
    const profile = profileDir === undefined ? undefined : windows.map((window) => summarizeProfiles(profileFiles, window));
    if (options.keepProf !== undefined && profileFiles.length > 0) {
      mkdirSync(options.keepProf, { recursive: true });
      for (const path of profileFiles) copyFileSync(path, join(options.keepProf, basename(path)));
      writeFileSync(join(options.keepProf, 'windows.json'), `${JSON.stringify(windows, null, 2)}\n`);
      log(`profiles kept in ${options.keepProf}`);
    }

    // ---- report ----
    const wallet = results.find((result) => result.name === 'wallet');
    const events = results.find((result) => result.name === 'events');
    const targets = {
      walletRead: {
        target: '≥ 15,000 req/s with p99 < 10 ms',
        requestsPerSecond: wallet?.requestsPerSecondMean ?? null,
        p99Ms: wallet?.latencyMs.p99 ?? null,
        met: wallet === undefined ? null : wallet.requestsPerSecondMean >= 15_000 && wallet.latencyMs.p99 < 10 && wallet.non2xx === 0 && wallet.errors === 0,
      },
      eventSubmission: {
        target: '≥ 5,000 req/s',
        requestsPerSecond: events?.requestsPerSecondMean ?? null,
        met: events === undefined ? null : events.requestsPerSecondMean >= 5_000 && events.non2xx === 0 && events.errors === 0,
      },
    };
    const report = {
      schema: 'loyalty-api-bench/1',
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      machine: { ...machine, loadAverageAtEnd: loadavg().map((value) => Math.round(value * 100) / 100) },
      parameters: options,
      seed: { members: options.members, events: seeded, seconds: Math.round(seedSeconds * 100) / 100 },
      background: { targetPerSecond: options.backgroundRate, published: background.published ?? null, ratePerSecond: background.ratePerSecond === undefined ? null : Math.round(background.ratePerSecond) },
      phases: results,
      targets,
      engineExitCode: exitCode,
      ...(exitCode !== 0 ? { engineOutputTail: engine.output().slice(-4_000) } : {}),
      ...(profile !== undefined ? { profile } : {}),
    };
    const resultsDir = join(ROOT, 'bench', 'results');
    mkdirSync(resultsDir, { recursive: true });
    const file = join(resultsDir, `api-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(table(report));
    process.stdout.write(`\nresult: ${file}\n`);
  } finally {
    if (publisher !== undefined && publisher.exitCode === null) publisher.kill('SIGKILL');
    if (engine !== undefined && engine.child.exitCode === null) {
      engine.child.kill('SIGKILL');
      await engine.exited;
    }
    await nc.close().catch(() => undefined);
    await server.stop();
    for (const cleanup of cleanups) cleanup();
  }
}

async function natsServerVersion(): Promise<string> {
  try {
    const binary = await testNatsServerBinary();
    const child = spawn(binary, ['--version']);
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
    await new Promise((resolveExit) => child.once('exit', resolveExit));
    return text.trim();
  } catch {
    return 'unknown';
  }
}

function table(report: any): string {
  const rows = [
    ['phase', 'req/s', 'p50 ms', 'p97.5 ms', 'p99 ms', 'max ms', '2xx', 'non-2xx', 'errors', 'engine CPU %', 'floor srv %', 'main thr %', 'API busy %', 'API CPU %', 'API CPU µs/req', 'wallet cached %', 'nats %', 'publisher %', 'autocannon %', 'other procs %', 'machine busy %', 'consumed/s', 'lag at end'],
  ];
  for (const phase of report.phases as PhaseResult[]) {
    rows.push([
      phase.name,
      String(phase.requestsPerSecondMean),
      String(phase.latencyMs.p50),
      String(phase.latencyMs.p97_5),
      String(phase.latencyMs.p99),
      String(phase.latencyMs.max),
      String(phase.responses2xx),
      String(phase.non2xx),
      String(phase.errors + phase.timeouts),
      String(phase.cpuPercent.engine),
      phase.cpuPercent.floorServer === undefined ? '-' : String(phase.cpuPercent.floorServer),
      String(phase.engineThreads.mainCpu),
      phase.engineThreads.apiBusy === null ? '-' : String(phase.engineThreads.apiBusy),
      phase.engineThreads.apiCpu === null ? '-' : String(phase.engineThreads.apiCpu),
      phase.engineThreads.apiCpuMicrosecondsPerRequest === null ? '-' : String(phase.engineThreads.apiCpuMicrosecondsPerRequest),
      phase.engineThreads.walletCachedPercent === null || phase.engineThreads.walletCachedPercent === undefined ? '-' : String(phase.engineThreads.walletCachedPercent),
      String(phase.cpuPercent.natsServer),
      String(phase.cpuPercent.publisher),
      String(phase.cpuPercent.benchClient),
      String(phase.cpuPercent.others),
      String(phase.cpuPercent.machineBusy),
      String(phase.engineConsumedPerSecond),
      String(phase.consumerLagAtEnd),
    ]);
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const line = (row: string[]) => `| ${row.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  let text = `\nAPI bench, ${report.machine.cores} × ${report.machine.cpuModel}, load average at start ${report.machine.loadAverageAtStart.join(' ')}\n`;
  text += `seed: ${report.seed.events} purchases for ${report.seed.members} members; background: ${report.background.ratePerSecond ?? '?'} purchases/s to JetStream\n`;
  text += 'CPU columns are % of one core (the machine has ' + report.machine.cores + '); "other procs" is what the rest of the machine used meanwhile; "consumed/s" is the engine\'s ack rate during the phase.\n';
  text += '"main thr" is the engine\'s main thread (ingest) CPU; "API busy" the HTTP API thread\'s event loop busy time (wall clock: it counts time the thread waited for a core), "API CPU" its CPU time and "API CPU µs/req" that per request.\n\n';
  text += `${line(rows[0]!)}\n|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|\n`;
  for (const row of rows.slice(1)) text += `${line(row)}\n`;
  const verdict = (met: boolean | null) => (met === null ? 'not measured' : met ? 'MET' : 'NOT MET');
  text += `\nwallet reads ${report.targets.walletRead.target}: ${verdict(report.targets.walletRead.met)}\n`;
  text += `event submission ${report.targets.eventSubmission.target}: ${verdict(report.targets.eventSubmission.met)}\n`;
  for (const window of report.profile ?? []) {
    for (const thread of window.threads) {
      text += `\nengine CPU profile, phase ${window.window}, ${thread.file}: ${thread.busyMs} ms busy of ${thread.sampledMs} ms; self time\n`;
      for (const item of thread.top.slice(0, 15)) text += `  ${String(item.percent).padStart(5)} %  ${item.name}\n`;
      text += '  by area:\n';
      for (const item of thread.byArea.slice(0, 10)) text += `  ${String(item.percent).padStart(5)} %  ${item.area}\n`;
      text += '  inclusive, src/:\n';
      for (const item of thread.inclusiveSrc.slice(0, 10)) text += `  ${String(item.percent).padStart(5)} %  ${item.name}\n`;
    }
  }
  return text;
}

main().catch((error: unknown) => {
  process.stderr.write(`[api-bench] failed: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
