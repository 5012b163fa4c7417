import { existsSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { ENCODINGS, type Encoding } from '../generator/load.js';
import { REPO_ROOT } from '../harness/engine.js';
import type { BenchParameters } from '../report/result.js';

export const USAGE = `Usage: npm run bench -- [options]      (or: npx tsx bench/run.ts [options])

Publishes generated purchases into JetStream while the engine consumes them and
reports end-to-end events/s and latency, beside the raw JetStream consume rate
measured on its own server in the same run.

  --events N          events to publish (default 200000; 200k and 1m work too)
  --warmup N          events sent to other members and awaited before measuring,
                      so JIT and caches are warm (default 10000; 0 = none)
  --members M         members the events are spread over (default 100000)
  --zipf-s S          Zipf exponent of member activity, 0 = uniform (default 1)
  --encoding E        json | msgpack (default json)
  --rate R            target publish rate in events/s, or "unlimited" (default)
  --seed N            generator seed (default 1); same seed, same events
  --program PATH      program file for the engine (default config/programs/simple.yaml
                      when it exists, else config/programs/retail.yaml)
  --verify MODE       auto | on | off: recompute every balance and compare
                      (auto = only with simple.yaml, where the check is exact)
  --baseline MODE     on | off | only: the raw JetStream baseline (default on)
  --baseline-repeats  consume passes of the baseline; the median is reported (default 5)
  --timeout-s N       stop the engine run after N s whatever happens
                      (default max(180, events / 1000))
  --stall-s N         stop waiting when no outcome arrived for N s (default 30)
  --wait-quiet-s N    first wait up to N s for the CPUs to be idle (busy < 15 % for 3 s)
                      (default 0: start at once, and only warn when busy)
  --results-dir DIR   where the JSON result goes (default bench/results)
  -h, --help          this text

Exit code: 0 when the run PASSED, 1 when it FAILED (lost events, missing
outcomes, wrong balances, unclean shutdown), 2 for bad options.`;

export class UsageError extends Error {}

export interface CliOptions {
  parameters: BenchParameters;
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

export function parseRate(text: string): number | null {
  if (/^(unlimited|max|0)$/i.test(text.trim())) return null;
  const value = parseCount(text, '--rate');
  if (value < 1) throw new UsageError('--rate must be at least 1 event/s, or "unlimited"');
  return value;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], name: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${name}: expected one of ${allowed.join(', ')}, got "${value}"`);
  return value as T;
}

function numberIn(text: string, name: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max) throw new UsageError(`${name}: expected a number in [${min}, ${max}], got "${text}"`);
  return value;
}

export function defaultProgramFile(): string {
  const simple = 'config/programs/simple.yaml';
  return existsSync(join(REPO_ROOT, simple)) ? simple : 'config/programs/retail.yaml';
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
        events: { type: 'string' },
        members: { type: 'string' },
        warmup: { type: 'string' },
        'zipf-s': { type: 'string' },
        encoding: { type: 'string' },
        rate: { type: 'string' },
        seed: { type: 'string' },
        program: { type: 'string' },
        verify: { type: 'string' },
        baseline: { type: 'string' },
        'baseline-repeats': { type: 'string' },
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
  const events = values.events === undefined ? 200_000 : parseCount(values.events, '--events');
  if (events < 1) throw new UsageError('--events must be at least 1');
  const members = values.members === undefined ? 100_000 : parseCount(values.members, '--members');
  if (members < 1 || members > 50_000_000) throw new UsageError('--members must be within [1, 50,000,000]');
  const seed = values.seed === undefined ? 1 : numberIn(values.seed, '--seed', 0, 0xffffffff);
  if (!Number.isInteger(seed)) throw new UsageError('--seed must be an integer');
  const programArgument = values.program ?? defaultProgramFile();
  const programPath = isAbsolute(programArgument) ? programArgument : join(process.cwd(), programArgument);
  if (!existsSync(programPath)) throw new UsageError(`--program: ${programArgument} does not exist`);
  // Shown relative to the repository when inside it; the engine gets an absolute path either way.
  const programFile = relative(REPO_ROOT, programPath).startsWith('..') ? programPath : relative(REPO_ROOT, programPath);
  const repeats = values['baseline-repeats'] === undefined ? 5 : numberIn(values['baseline-repeats'], '--baseline-repeats', 1, 20);
  const parameters: BenchParameters = {
    scenario: 'purchases-e2e',
    events,
    warmupEvents: values.warmup === undefined ? 10_000 : parseCount(values.warmup, '--warmup'),
    members,
    zipfExponent: values['zipf-s'] === undefined ? 1 : numberIn(values['zipf-s'], '--zipf-s', 0, 5),
    encoding: oneOf<Encoding>(values.encoding ?? 'json', ENCODINGS, '--encoding'),
    ratePerSecond: values.rate === undefined ? null : parseRate(values.rate),
    seed,
    runId,
    programFile,
    verify: oneOf(values.verify ?? 'auto', ['auto', 'on', 'off'] as const, '--verify'),
    baseline: oneOf(values.baseline ?? 'on', ['on', 'off', 'only'] as const, '--baseline'),
    baselineRepeats: Math.round(repeats),
    timeoutSeconds: values['timeout-s'] === undefined ? Math.max(180, Math.ceil(events / 1_000)) : numberIn(values['timeout-s'], '--timeout-s', 1, 86_400),
    stallSeconds: values['stall-s'] === undefined ? 30 : numberIn(values['stall-s'], '--stall-s', 1, 3_600),
    waitQuietSeconds: values['wait-quiet-s'] === undefined ? 0 : numberIn(values['wait-quiet-s'], '--wait-quiet-s', 0, 3_600),
  };
  return { parameters, resultsDir: values['results-dir'], help: values.help === true };
}
