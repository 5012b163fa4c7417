import type { ProgramFacts } from '../correctness/balances.js';
import type { GeneratedLoad } from '../generator/load.js';
import type { Progress } from '../report/progress.js';
import type { BenchParameters } from '../report/result.js';

/**
 * A scenario drives the engine with one traffic shape and measures it. The
 * load is generated before the scenario starts (so generation is never timed)
 * and the transport baseline runs separately; a scenario only runs the engine.
 */
export interface ScenarioContext {
  readonly load: GeneratedLoad;
  /** Sent and awaited before the measured load (null: no warm-up). */
  readonly warmup: GeneratedLoad | null;
  readonly parameters: BenchParameters;
  readonly program: ProgramFacts;
  readonly progress: Progress;
  /** Where the scenario may write side files (the engine's log), named with `runStamp`. */
  readonly resultsDir: string;
  readonly runStamp: string;
}

export interface Scenario<Result> {
  readonly name: string;
  readonly description: string;
  run(context: ScenarioContext): Promise<Result>;
}
