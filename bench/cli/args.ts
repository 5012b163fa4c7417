import { existsSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { EVENT_KINDS, STANDARD_MIX, type EventKind } from '../generator/events.js';
import { DEFAULT_CHUNK_EVENTS, ENCODINGS, type Encoding } from '../generator/spool.js';
import { REPO_ROOT } from '../harness/engine.js';
import type { BenchParameters, ScenarioName } from '../report/result.js';
import { cyberDayShape, rampShape, steadyShape, type RateShape } from '../scenarios/shapes.js';

/** SAP Commerce Cloud's Cyber Week 2022 peak: 3,450 orders per minute. */
export const PUBLISHED_PEAK_PER_MINUTE = 3_450;
/** 1,000 times that peak, in events per second. */
export const THOUSAND_TIMES_PEAK_PER_SECOND = Math.round((PUBLISHED_PEAK_PER_MINUTE * 1_000) / 60);

export const SCENARIOS: readonly ScenarioName[] = ['cyber-week', 'steady', 'ramp', 'max'];

export const USAGE = `Usage: npm run bench -- [options]      (or: npx tsx bench/run.ts [options])

Publishes generated loyalty traffic into JetStream while the engine consumes it,
and reports committed events/s, publish-to-outcome latency, consumer lag, CPU
and memory over time, beside two baselines measured in the same run on the same
events: raw JetStream consume-and-ack, and a batched PostgreSQL ledger consumer.
Every run ends by checking the engine's balances against a replay of the events.

Scenarios (--scenario):
  cyber-week  (default) a Cyber Week day compressed into --duration-s (default 60):
              quiet night, morning ramp, evening spike at --peak (default ${THOUSAND_TIMES_PEAK_PER_SECOND.toLocaleString('en-US')}/s,
              1,000 × SAP Commerce Cloud's 2022 peak of 3,450 orders/min), ~3.4 × the mean
  steady      --rate events/s (default 5000) for --duration-s (default 60)
  ramp        from 10 % of --peak (default 50000) to --peak over 75 % of --duration-s
              (default 60), then held
  max         --events (default 200000) published as fast as possible: the engine's
              capacity while it drains a backlog

Load:
  --members M         members, Zipf-distributed activity (default 1000000)
  --zipf-s S          Zipf exponent, 0 = uniform (default 1)
  --mix LIST          kind=weight,... of purchase, return, redemption, activity
                      (default purchase=90,return=5,redemption=3,activity=2; kinds the
                      program does not support are dropped with a note)
  --encoding E        msgpack | json (default msgpack)
  --seed N            generator seed (default 1); same seed, same events
  --program PATH      program file (default config/programs/retail.yaml)
  --warmup N          events to other members, sent and awaited first (default 10000)
  --chunk-events N    events per generated chunk (default ${DEFAULT_CHUNK_EVENTS})

Baselines and checks:
  --baseline MODE     on | off | only: the baselines (default on)
  --baseline-repeats  raw consume passes; the median is reported (default 3)
  --postgres MODE     auto | on | off: the PostgreSQL ledger baseline (default auto:
                      run it, installing PostgreSQL with apt-get when root; skip with
                      a note when it cannot; on: a skip is a failure)
  --postgres-batch N  events per PostgreSQL transaction (default 500)
  --verify MODE       on | off: the correctness check (default on)

Engine and limits:
  --engine-env K=V    an engine setting (LOYALTY_*), repeatable, e.g. LOYALTY_ACTORS=2
  --timeout-s N       stop waiting for the engine after N s (default: the schedule
                      plus events / 1,000 s, at least 180)
  --stall-s N         stop when no outcome arrived for N s (default 30)
  --wait-quiet-s N    first wait up to N s for idle CPUs (default 0)
  --results-dir DIR   where the JSON and HTML results go (default bench/results)
  -h, --help          this text

Exit code: 0 when the run PASSED, 1 when it FAILED (lost events, missing or
wrong outcomes, wrong balances, dead letters, unclean shutdown), 2 for bad options.`;

export class UsageError extends Error {}

export interface CliOptions {
  parameters: BenchParameters;
  shape: RateShape | null;
  resultsDir: string | undefined;
  help: boolean;
}

/** "200000", "200_000", "200k", "1.5m" → integer. */
export function parseCount(text: string, name: string): number {
  const match = /^(\d+(?:\.\d+)?)([km]?)$/i.exec(text.replace(/_/g, '').trim());
  if (match === null) throw new UsageError(`${name}: expected a number such as 200000, 200k or 1m, got "${text}"`);
  const multiplier = { '': 1, k: 1_000, m: 1_000_000 }[match[2]!.toLowerCase() as '' | 'k' | 'm'];
  const value = Number(match[1]) * multiplier;
  if (!Number.isSafeInteger(value)) throw new UsageError(`${name}: must be a whole number, got "${text}"`);
  return value;
}

/** "purchase=90,return=5" → weights of every kind (missing kinds 0). */
export function parseMix(text: string): Record<EventKind, number> {
  const mix: Record<EventKind, number> = { purchase: 0, return: 0, redemption: 0, activity: 0 };
  for (const part of text.split(',')) {
    const match = /^\s*([a-z]+)\s*=\s*(\d+(?:\.\d+)?)\s*$/.exec(part);
    if (match === null) throw new UsageError(`--mix: expected kind=weight pairs such as purchase=90,return=5, got "${part}"`);
    if (!(EVENT_KINDS as readonly string[]).includes(match[1]!)) throw new UsageError(`--mix: unknown kind "${match[1]}" (kinds: ${EVENT_KINDS.join(', ')})`);
    mix[match[1] as EventKind] = Number(match[2]);
  }
  if (!(mix.purchase > 0)) throw new UsageError('--mix: purchases need a positive weight');
  return mix;
}

export function oneOf<T extends string>(value: string, allowed: readonly T[], name: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${name}: expected one of ${allowed.join(', ')}, got "${value}"`);
  return value as T;
}

export function numberIn(text: string, name: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max) throw new UsageError(`${name}: expected a number in [${min}, ${max}], got "${text}"`);
  return value;
}

/** Repeated `--engine-env LOYALTY_NAME=value` → the engine's extra settings. */
export function parseEngineEnv(pairs: readonly string[]): Record<string, string> {
  const engineEnv: Record<string, string> = {};
  for (const pair of pairs) {
    const match = /^(LOYALTY_[A-Z0-9_]+)=(.*)$/.exec(pair);
    if (match === null) throw new UsageError(`--engine-env: expected LOYALTY_NAME=value, got "${pair}"`);
    engineEnv[match[1]!] = match[2]!;
  }
  return engineEnv;
}

/** Parses the command line; throws UsageError with a message naming the bad option. */
export function parseCli(argv: readonly string[], runId: string): CliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        scenario: { type: 'string' },
        events: { type: 'string' },
        rate: { type: 'string' },
        peak: { type: 'string' },
        'duration-s': { type: 'string' },
        members: { type: 'string' },
        warmup: { type: 'string' },
        'zipf-s': { type: 'string' },
        mix: { type: 'string' },
        encoding: { type: 'string' },
        seed: { type: 'string' },
        program: { type: 'string' },
        verify: { type: 'string' },
        baseline: { type: 'string' },
        'baseline-repeats': { type: 'string' },
        postgres: { type: 'string' },
        'postgres-batch': { type: 'string' },
        'engine-env': { type: 'string', multiple: true },
        'chunk-events': { type: 'string' },
        'timeout-s': { type: 'string' },
        'stall-s': { type: 'string' },
        'results-dir': { type: 'string' },
        'wait-quiet-s': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values = parsed.values;
  const scenario = oneOf<ScenarioName>(values.scenario ?? 'cyber-week', SCENARIOS, '--scenario');
  const only = (option: string, allowed: readonly ScenarioName[]): void => {
    if ((values as Record<string, unknown>)[option] !== undefined && !allowed.includes(scenario)) {
      throw new UsageError(`--${option} applies to ${allowed.join(', ')}, not to --scenario ${scenario}`);
    }
  };
  only('events', ['max']);
  only('rate', ['steady']);
  only('peak', ['cyber-week', 'ramp']);
  only('duration-s', ['cyber-week', 'steady', 'ramp']);
  let shape: RateShape | null = null;
  let events: number;
  let ratePerSecond: number | null = null;
  let durationSeconds: number | null = null;
  try {
    if (scenario === 'max') {
      events = values.events === undefined ? 200_000 : parseCount(values.events, '--events');
      if (events < 1) throw new UsageError('--events must be at least 1');
    } else {
      durationSeconds = values['duration-s'] === undefined ? 60 : numberIn(values['duration-s'], '--duration-s', 1, 86_400);
      if (scenario === 'steady') {
        ratePerSecond = values.rate === undefined ? 5_000 : parseCount(values.rate, '--rate');
        shape = steadyShape(ratePerSecond, durationSeconds);
      } else if (scenario === 'ramp') {
        ratePerSecond = values.peak === undefined ? 50_000 : parseCount(values.peak, '--peak');
        shape = rampShape(ratePerSecond, durationSeconds);
      } else {
        ratePerSecond = values.peak === undefined ? THOUSAND_TIMES_PEAK_PER_SECOND : parseCount(values.peak, '--peak');
        shape = cyberDayShape(ratePerSecond, durationSeconds);
      }
      events = shape.totalEvents;
    }
  } catch (error) {
    if (error instanceof RangeError) throw new UsageError(error.message);
    throw error;
  }
  const members = values.members === undefined ? 1_000_000 : parseCount(values.members, '--members');
  if (members < 1 || members > 50_000_000) throw new UsageError('--members must be within [1, 50,000,000]');
  const seed = values.seed === undefined ? 1 : numberIn(values.seed, '--seed', 0, 0xffffffff);
  if (!Number.isInteger(seed)) throw new UsageError('--seed must be an integer');
  const programArgument = values.program ?? 'config/programs/retail.yaml';
  const programPath = isAbsolute(programArgument) ? programArgument : join(process.cwd(), programArgument);
  if (!existsSync(programPath)) throw new UsageError(`--program: ${programArgument} does not exist`);
  // Shown relative to the repository when inside it; the engine gets an absolute path either way.
  const programFile = relative(REPO_ROOT, programPath).startsWith('..') ? programPath : relative(REPO_ROOT, programPath);
  const engineEnv = parseEngineEnv(values['engine-env'] ?? []);
  const repeats = values['baseline-repeats'] === undefined ? 3 : numberIn(values['baseline-repeats'], '--baseline-repeats', 1, 20);
  // Generous: the engine runs at a few thousand retail events/s here, and a run cut short fails.
  const defaultTimeout = Math.max(180, Math.ceil((durationSeconds ?? 0) + events / 1_000));
  const parameters: BenchParameters = {
    scenario,
    shape: shape?.description ?? null,
    events,
    ratePerSecond,
    durationSeconds,
    warmupEvents: values.warmup === undefined ? 10_000 : parseCount(values.warmup, '--warmup'),
    members,
    zipfExponent: values['zipf-s'] === undefined ? 1 : numberIn(values['zipf-s'], '--zipf-s', 0, 5),
    encoding: oneOf<Encoding>(values.encoding ?? 'msgpack', ENCODINGS, '--encoding'),
    mix: values.mix === undefined ? { ...STANDARD_MIX } : parseMix(values.mix),
    seed,
    runId,
    programFile,
    verify: oneOf(values.verify ?? 'on', ['on', 'off'] as const, '--verify'),
    baseline: oneOf(values.baseline ?? 'on', ['on', 'off', 'only'] as const, '--baseline'),
    baselineRepeats: Math.round(repeats),
    postgres: oneOf(values.postgres ?? 'auto', ['auto', 'on', 'off'] as const, '--postgres'),
    postgresBatchEvents: values['postgres-batch'] === undefined ? 500 : Math.round(numberIn(values['postgres-batch'], '--postgres-batch', 1, 100_000)),
    engineEnv,
    chunkEvents: values['chunk-events'] === undefined ? DEFAULT_CHUNK_EVENTS : Math.round(numberIn(values['chunk-events'], '--chunk-events', 100, 1_000_000)),
    timeoutSeconds: values['timeout-s'] === undefined ? defaultTimeout : numberIn(values['timeout-s'], '--timeout-s', 1, 86_400),
    stallSeconds: values['stall-s'] === undefined ? 30 : numberIn(values['stall-s'], '--stall-s', 1, 3_600),
    waitQuietSeconds: values['wait-quiet-s'] === undefined ? 0 : numberIn(values['wait-quiet-s'], '--wait-quiet-s', 0, 3_600),
  };
  return { parameters, shape, resultsDir: values['results-dir'], help: values.help === true };
}
