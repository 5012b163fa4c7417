/**
 * `npm run bench`: generate the load, measure the raw JetStream baseline on
 * its own server, run the engine scenario on a fresh server, check balances,
 * print the table and write bench/results/<timestamp>.json.
 *
 * The phases run one after the other, never overlapping: the machine's cores
 * are shared by everything measured.
 */
import { isAbsolute, join, resolve } from 'node:path';
import { runRawBaseline, type RawBaselineResult } from './baselines/jetstream-raw.js';
import { parseCli, USAGE, UsageError } from './cli/args.js';
import { checkBalances, expectedPoints, readProgramFacts, skippedCorrectness, type CorrectnessResult, type ProgramFacts } from './correctness/balances.js';
import { DEFAULT_GENERATOR_OPTIONS, type GeneratorOptions } from './generator/events.js';
import { generateLoad, meanPayloadBytes, type GeneratedLoad } from './generator/load.js';
import { engineAvailable, ENGINE_ENTRY, REPO_ROOT } from './harness/engine.js';
import { machineCpuBusyPercent } from './measure/process-sampler.js';
import { ratio } from './measure/stats.js';
import { formatCount, Progress } from './report/progress.js';
import { describeEnvironment, RESULTS_DIR, runStampOf, writeResultFile } from './report/result-file.js';
import { RESULT_SCHEMA_VERSION, type BenchParameters, type BenchResult } from './report/result.js';
import { renderTable } from './report/table.js';
import type { OutcomeCollector } from './measure/outcomes.js';
import { purchasesEndToEnd, type EngineRunResult } from './scenarios/purchases-e2e.js';

/** Above this share of busy CPU before the run, the report warns that the figures are suspect. */
const BUSY_PERCENT_WARNING = 15;
/** Above this CPU use by unrelated processes during a phase (% of one core), the report says the phase is skewed. */
const OTHER_CPU_PERCENT_WARNING = 20;

async function main(): Promise<number> {
  const startedAt = new Date();
  const runStamp = runStampOf(startedAt);
  // Event ids are e<runId>-<index>: unique per run, and the index makes outcome matching an array access.
  const runId = startedAt.getTime().toString(36);
  let cli;
  try {
    cli = parseCli(process.argv.slice(2), runId);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw error;
  }
  if (cli.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { parameters } = cli;
  const resultsDir = cli.resultsDir === undefined ? RESULTS_DIR : isAbsolute(cli.resultsDir) ? cli.resultsDir : join(process.cwd(), cli.resultsDir);
  const progress = new Progress();
  if (parameters.waitQuietSeconds > 0) await waitForQuiet(parameters.waitQuietSeconds, progress);
  const environment = await describeEnvironment();
  const busyBefore = environment.cpuBusyPercentAtStart;
  const machineBusy = busyBefore !== null && busyBefore > BUSY_PERCENT_WARNING;
  if (machineBusy) progress.log(`warning: the CPUs were ${busyBefore} % busy before the run; other work will skew the figures`);
  const failures: string[] = [];
  const notes: string[] = [];
  const program = readProgramFacts(resolve(REPO_ROOT, parameters.programFile));

  const load = generate(parameters, program, progress);
  const warmup = parameters.warmupEvents > 0 ? generateWarmup(parameters, program) : null;

  let baseline: RawBaselineResult | null = null;
  if (parameters.baseline !== 'off') {
    progress.log(`raw baseline: own nats-server, stream, durable pull consumer (ack-all every 1,000); ${parameters.baselineRepeats} consume passes`);
    baseline = await runRawBaseline({
      load,
      repeats: parameters.baselineRepeats,
      onProgress: (phase, done, total) => progress.update(`${phase}: ${formatCount(done)}/${formatCount(total)}`),
    });
    progress.log(
      `raw baseline: consume ${formatCount(baseline.consume.ratePerSecond)} msg/s (median), ingest ${formatCount(baseline.ingest.storedPerSecond)} msg/s`,
    );
    if (!baseline.consume.complete) failures.push('the raw baseline did not consume and ack every message');
    if (baseline.ingest.stream.lost > 0) failures.push(`the raw baseline stream lost ${baseline.ingest.stream.lost} published messages`);
  }

  let engine: EngineRunResult | null = null;
  let engineError: string | null = null;
  let correctness: CorrectnessResult = skippedCorrectness('no engine run');
  if (parameters.baseline !== 'only') {
    if (!engineAvailable()) {
      failures.push(`the engine was not run: ${ENGINE_ENTRY} does not exist yet`);
    } else {
      try {
        const output = await purchasesEndToEnd.run({ load, warmup, parameters, program, progress, resultsDir, runStamp });
        engine = output.result;
        judgeEngineRun(engine, load, program, failures, notes);
        correctness = checkCorrectness(parameters, program, load, output.collector);
        if (correctness.checked && !correctness.passed) failures.push('balances differ from the independent recomputation (see correctness)');
      } catch (error) {
        // The engine failing (not starting, dying mid-run) is a result, not a crash of the bench: keep the baseline.
        progress.clear();
        engineError = error instanceof Error ? error.message : String(error);
        failures.push(`the engine run failed: ${engineError.split('\n')[0]}`);
        correctness = skippedCorrectness('the engine run failed');
      }
    }
  }
  if (parameters.ratePerSecond === null && engine !== null) {
    notes.push('rate unlimited: latency includes the time events wait in the stream behind the backlog; for service latency run with --rate below the end-to-end rate');
  }
  if (!correctness.checked) notes.push(`balances not checked: ${correctness.note}`);
  const others = [
    ['raw baseline', baseline?.otherProcessesCpuPercentMean],
    ['engine run', engine?.usage.otherProcessesCpuPercentMean],
  ] as const;
  for (const [phase, percent] of others) {
    if (percent !== null && percent !== undefined && percent > OTHER_CPU_PERCENT_WARNING) {
      notes.push(`other processes used ${percent} % of a core during the ${phase}: its figures are skewed low; rerun on a quiet machine`);
    }
  }
  if (machineBusy) notes.push(`the CPUs were ${busyBefore} % busy with other work just before the run: figures may be low`);
  if (program.simple === false && engine !== null) notes.push(`program ${parameters.programFile} is not the simple program: throughput includes its rules`);

  const result: BenchResult = {
    schemaVersion: RESULT_SCHEMA_VERSION,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    verdict: failures.length === 0 ? 'PASSED' : 'FAILED',
    failures,
    notes,
    environment,
    parameters,
    load: {
      generateMs: Math.round(load.generateMs),
      generatorEventsPerSecond: load.eventsPerSecond,
      meanPayloadBytes: meanPayloadBytes(load),
      payloadBytesTotal: load.bytes.length,
      distinctMembers: load.distinctMembers,
      hottestMemberShare: load.hottestMemberShare,
    },
    baseline,
    engine,
    engineError,
    ratios: {
      engineToRawConsume: ratio(engine?.throughput.eventsPerSecond, baseline?.consume.ratePerSecond),
      engineSteadyToRawConsume: ratio(engine?.throughput.steadyEventsPerSecond, baseline?.consume.ratePerSecond),
    },
    correctness,
  };
  const file = writeResultFile(result, runStamp, resultsDir);
  progress.clear();
  process.stdout.write(`\n${renderTable(result, file)}\n`);
  return result.verdict === 'PASSED' ? 0 : 1;
}

/** Waits until the CPUs were less than BUSY_PERCENT_WARNING busy for three seconds in a row, or the time is up. */
async function waitForQuiet(seconds: number, progress: Progress): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  let quiet = 0;
  while (Date.now() < deadline) {
    const busy = await machineCpuBusyPercent(1_000);
    if (busy === null) return;
    quiet = busy < BUSY_PERCENT_WARNING ? quiet + 1 : 0;
    if (quiet >= 3) {
      progress.clear();
      return;
    }
    progress.update(`waiting for quiet CPUs: ${busy} % busy (up to ${Math.ceil((deadline - Date.now()) / 1000)} s more)`);
  }
  progress.log(`the CPUs did not become quiet within ${seconds} s; starting anyway`);
}

function generatorOptions(parameters: BenchParameters, program: ProgramFacts): GeneratorOptions {
  return {
    ...DEFAULT_GENERATOR_OPTIONS,
    seed: parameters.seed,
    runId: parameters.runId,
    members: parameters.members,
    zipfExponent: parameters.zipfExponent,
    // Purchases in the program's currency: anything else would be rejected, which is another scenario.
    currency: program.currency,
  };
}

/** The warm-up goes to members `w<rank>` with ids `e<runId>w-<i>`: it never touches the measured members or ids. */
function generateWarmup(parameters: BenchParameters, program: ProgramFacts): GeneratedLoad {
  const base = generatorOptions(parameters, program);
  return generateLoad({
    generator: { ...base, seed: (base.seed + 1) >>> 0, runId: `${parameters.runId}w`, memberPrefix: 'w' },
    count: parameters.warmupEvents,
    encoding: parameters.encoding,
  });
}

function generate(parameters: BenchParameters, program: ProgramFacts, progress: Progress): GeneratedLoad {
  const generator = generatorOptions(parameters, program);
  progress.log(`generating ${formatCount(parameters.events)} events (${parameters.encoding}, seed ${parameters.seed}) before any clock starts`);
  const load = generateLoad({
    generator,
    count: parameters.events,
    encoding: parameters.encoding,
    onProgress: (done) => progress.update(`generating: ${formatCount(done)}/${formatCount(parameters.events)}`),
  });
  progress.log(
    `generated ${formatCount(load.count)} events in ${(load.generateMs / 1000).toFixed(2)} s (${formatCount(load.eventsPerSecond)}/s), ` +
      `${formatCount(meanPayloadBytes(load))} B each on average, ${formatCount(load.distinctMembers)} distinct members`,
  );
  return load;
}

function judgeEngineRun(engine: EngineRunResult, load: GeneratedLoad, program: ProgramFacts, failures: string[], notes: string[]): void {
  if (engine.publish.published < load.count) failures.push(`only ${engine.publish.published} of ${load.count} events were published (${engine.ended})`);
  if (engine.stream === null) failures.push('the stream count was not checked (the engine exited while publishing)');
  else if (engine.stream.lost > 0) failures.push(`${engine.stream.lost} published events never reached the stream ${engine.stream.stream}`);
  const withoutOutcome = load.count - engine.throughput.eventsDone;
  if (engine.ended === 'acked-all') {
    // The engine committed and acked everything, but some events produced no outcome. The contract says one
    // outcome per event; an event that moves no balance (0 points) may legitimately have none in this engine.
    let zeroPointEvents = 0;
    for (let index = 0; index < load.count; index++) if (expectedPoints(load.amountsMinor[index]!, program.earn) === 0) zeroPointEvents += 1;
    const message =
      `${withoutOutcome} events were acked by the engine without an outcome ` +
      `(${zeroPointEvents} events earn 0 base points); they are left out of the latency figures`;
    if (withoutOutcome > zeroPointEvents) failures.push(message);
    else notes.push(message);
  } else if (withoutOutcome > 0) {
    failures.push(`${withoutOutcome} of ${load.count} events got no outcome (ended: ${engine.ended})`);
  }
  const rejected = engine.outcomes.byKind.rejected ?? 0;
  if (rejected > 0) failures.push(`${rejected} valid generated events were rejected (codes: ${JSON.stringify(engine.outcomes.rejectionCodes)})`);
  if (engine.shutdown === null || engine.shutdown.killed) failures.push('the engine did not stop within 30 s of SIGTERM');
  else if (engine.shutdown.code !== 0) failures.push(`the engine exited with code ${engine.shutdown.code ?? engine.shutdown.signal} after SIGTERM`);
  if (engine.outcomes.duplicateOutcomes > 0) notes.push(`${engine.outcomes.duplicateOutcomes} outcomes were received twice (redelivery or outbox re-publish)`);
  if (engine.outcomes.foreign + engine.outcomes.unparsable > 0) {
    notes.push(`${engine.outcomes.foreign} outcomes of unknown events and ${engine.outcomes.unparsable} unparsable outcomes were ignored`);
  }
  if (engine.outcomes.balanceOtherCurrency > 0) {
    notes.push(
      `${engine.outcomes.balanceOtherCurrency} balance outcomes were not for the points currency "${program.pointsCurrency}" (or named none) and were not compared`,
    );
  }
  if (engine.metrics.errors.length > 0) notes.push(`/metrics could not always be read: ${engine.metrics.errors.join('; ')}`);
}

function checkCorrectness(parameters: BenchParameters, program: ProgramFacts, load: GeneratedLoad, collector: OutcomeCollector): CorrectnessResult {
  if (parameters.verify === 'off') return skippedCorrectness('--verify off');
  if (parameters.verify === 'auto' && !program.simple) {
    return skippedCorrectness(`program ${parameters.programFile} is not simple.yaml; the recomputation is exact only for the base earn rate (use --verify on to force)`);
  }
  if (parameters.verify === 'auto' && program.inexactBecause.length > 0) {
    return skippedCorrectness(`program ${parameters.programFile} has ${program.inexactBecause.join(', ')}: the base-earn recomputation would not be exact (use --verify on to force)`);
  }
  const caveat = program.inexactBecause.length > 0 ? ` (forced with --verify on despite ${program.inexactBecause.join(', ')})` : '';
  return checkBalances(
    load,
    program.earn,
    collector,
    `spendable balance after every event recomputed as Σ ${program.earn.rounding}(amountMinor × ${program.earn.points} / ${program.earn.perAmountMinor}) per member${caveat}`,
  );
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`\nbench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
