import type { RawBaselineResult } from '../baselines/jetstream-raw.js';
import type { CorrectnessResult } from '../correctness/balances.js';
import type { Encoding } from '../generator/load.js';
import type { EngineRunResult } from '../scenarios/purchases-e2e.js';

/**
 * The JSON result file (bench/results/<timestamp>.json). Versioned so that
 * comparisons across commits can tell when fields changed meaning; bump
 * RESULT_SCHEMA_VERSION when a field is renamed or redefined.
 */
export const RESULT_SCHEMA_VERSION = 1;

export interface BenchParameters {
  scenario: string;
  events: number;
  /** Events published and awaited before the measured run (other members, other ids); not measured. */
  warmupEvents: number;
  members: number;
  zipfExponent: number;
  encoding: Encoding;
  /** Target publish rate in events/s; null = unlimited. */
  ratePerSecond: number | null;
  seed: number;
  runId: string;
  programFile: string;
  verify: 'auto' | 'on' | 'off';
  baseline: 'on' | 'off' | 'only';
  baselineRepeats: number;
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
  engine: EngineRunResult | null;
  /** Why the engine run stopped with an error (the engine's last output included), or null. */
  engineError: string | null;
  ratios: {
    /** Engine end-to-end events/s ÷ raw JetStream consume-and-ack msg/s (≤ 1 in practice). */
    engineToRawConsume: number | null;
    /** The same with the engine's steady (10–90 %) rate. */
    engineSteadyToRawConsume: number | null;
  };
  correctness: CorrectnessResult;
}
