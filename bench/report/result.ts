import type { RawBaselineResult } from '../baselines/jetstream-raw.js';
import type { PostgresBaselineResult } from '../baselines/postgres-ledger.js';
import type { CorrectnessResult } from '../correctness/replay.js';
import type { EventKind, GeneratorStats } from '../generator/events.js';
import type { Encoding } from '../generator/spool.js';
import type { EngineRunResult } from '../scenarios/engine-run.js';

/**
 * The JSON result file (bench/results/<timestamp>.json). Versioned so that
 * comparisons across commits can tell when fields changed meaning; bump
 * RESULT_SCHEMA_VERSION when a field is renamed or redefined.
 * 2: scenarios and shapes, the event mix, the PostgreSQL baseline, the domain
 *    replay check, per-second timeline with latency and lag, targets.
 */
export const RESULT_SCHEMA_VERSION = 2;

export type ScenarioName = 'cyber-week' | 'steady' | 'ramp' | 'max';

export interface BenchParameters {
  scenario: ScenarioName;
  /** The schedule, for people (null: as fast as possible). */
  shape: string | null;
  events: number;
  /** cyber-week and ramp: the peak rate; steady: the rate (events/s). */
  ratePerSecond: number | null;
  /** Length of the schedule (a compressed day for cyber-week), s. */
  durationSeconds: number | null;
  warmupEvents: number;
  members: number;
  zipfExponent: number;
  encoding: Encoding;
  mix: Record<EventKind, number>;
  seed: number;
  runId: string;
  programFile: string;
  verify: 'on' | 'off';
  baseline: 'on' | 'off' | 'only';
  baselineRepeats: number;
  postgres: 'auto' | 'on' | 'off';
  postgresBatchEvents: number;
  engineEnv: Record<string, string>;
  chunkEvents: number;
  timeoutSeconds: number;
  stallSeconds: number;
  /** Waited up to this long for the CPUs to be quiet before starting (0 = did not wait). */
  waitQuietSeconds: number;
}

export interface BenchEnvironment {
  hostname: string;
  platform: string;
  kernel: string;
  cpuCount: number;
  cpuModel: string;
  memoryBytes: number;
  /** 1, 5 and 15 minute load averages when the run started (they include earlier runs for a minute or more). */
  loadAverageAtStart: number[];
  /** Share of all CPUs busy during one second before the run: other work on the machine skews every figure. */
  cpuBusyPercentAtStart: number | null;
  node: string;
  natsServer: string;
  gitCommit: string | null;
  /** Uncommitted changes in the tree when the run started: the figures may not match gitCommit. */
  gitDirty: boolean | null;
}

export interface LoadFacts {
  generateMs: number;
  generatorEventsPerSecond: number;
  meanPayloadBytes: number;
  payloadBytesTotal: number;
  distinctMembers: number;
  hottestMemberShare: number;
  generator: GeneratorStats;
  chunks: number;
}

/** One of the targets, judged on this run when its conditions apply. */
export interface TargetCheck {
  target: string;
  /** What was measured, with its unit; null when this run does not measure it. */
  measured: string | null;
  /** null: not applicable to this run's conditions. */
  met: boolean | null;
  conditions: string;
}

export interface BenchResult {
  schemaVersion: typeof RESULT_SCHEMA_VERSION;
  startedAt: string;
  finishedAt: string;
  verdict: 'PASSED' | 'FAILED';
  /** Why the run FAILED (empty when PASSED). */
  failures: string[];
  /** What a reader must know to interpret the figures (skipped checks, caveats). */
  notes: string[];
  environment: BenchEnvironment;
  parameters: BenchParameters;
  load: LoadFacts;
  baseline: RawBaselineResult | null;
  postgres: PostgresBaselineResult | null;
  engine: EngineRunResult | null;
  /** Why the engine run stopped with an error (the engine's last output included), or null. */
  engineError: string | null;
  ratios: {
    /** The engine's capacity figure (see capacityBasis) ÷ raw JetStream consume-and-ack msg/s. */
    engineToRawConsume: number | null;
    /** The engine's capacity figure ÷ the transport ceiling of its contract (consume + ack-all + its outcome messages into JetStream). */
    engineToContractCeiling: number | null;
    /** The engine's capacity figure ÷ the PostgreSQL ledger consumer's events/s. */
    engineToPostgres: number | null;
    /** Which engine figure the ratios use. */
    capacityBasis: string;
    capacityEventsPerSecond: number | null;
  };
  targets: TargetCheck[];
  correctness: CorrectnessResult;
}
