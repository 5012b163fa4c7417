/**
 * `npm run bench`: generate the load into a spool (chunked, before any clock
 * starts), measure the baselines (raw JetStream consume-and-ack, then a
 * batched PostgreSQL ledger consumer) on their own server, run the engine on
 * a fresh server with the scenario's traffic shape, check every balance
 * against a replay of the published events, and write the JSON and HTML
 * reports. The phases never overlap: the machine's cores are shared by
 * everything measured.
 */
import { isAbsolute, join, resolve } from 'node:path';
import { sampleOutcomes } from './baselines/contract-outcomes.js';
import { runRawBaseline, type RawBaselineResult } from './baselines/jetstream-raw.js';
import { runPostgresLedger, skippedPostgres, type PostgresBaselineResult } from './baselines/postgres-ledger.js';
import { parseCli, USAGE, UsageError } from './cli/args.js';
import { replayAndCompare, skippedCorrectness, type CorrectnessResult } from './correctness/replay.js';
import { WARMUP_CLOCK } from './generator/clock.js';
import { DEFAULT_GENERATOR_OPTIONS, EVENT_KINDS, type EventKind, type GeneratorOptions } from './generator/events.js';
import { programModelOf, type ProgramModel } from './generator/program-model.js';
import { writeSpool, type Spool } from './generator/spool.js';
import { registerCleanup } from './harness/cleanup.js';
import { engineAvailable, ENGINE_ENTRY, REPO_ROOT } from './harness/engine.js';
import { sourceFingerprint } from './harness/source-fingerprint.js';
import { makeTempDir } from './harness/temp.js';
import { machineCpuBusyPercent } from './measure/process-sampler.js';
import { ratio } from './measure/stats.js';
import { writeHtmlReport } from './report/html.js';
import { bar, formatCount, Progress } from './report/progress.js';
import { describeEnvironment, RESULTS_DIR, runStampOf, writeResultFile } from './report/result-file.js';
import { RESULT_SCHEMA_VERSION, type BenchParameters, type BenchResult, type LoadFacts } from './report/result.js';
import { renderTable } from './report/table.js';
import { judgeTargets } from './report/targets.js';
import { loadProgramFile } from '../src/config/program-file.js';
import { runEngineScenario, type EngineRunOutput, type EngineRunResult } from './scenarios/engine-run.js';

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
  const { parameters, shape } = cli;
  const resultsDir = cli.resultsDir === undefined ? RESULTS_DIR : isAbsolute(cli.resultsDir) ? cli.resultsDir : join(process.cwd(), cli.resultsDir);
  const progress = new Progress();
  if (parameters.waitQuietSeconds > 0) await waitForQuiet(parameters.waitQuietSeconds, progress);
  const environment = await describeEnvironment();
  const busyBefore = environment.cpuBusyPercentAtStart;
  const machineBusy = busyBefore !== null && busyBefore > BUSY_PERCENT_WARNING;
  if (machineBusy) progress.log(`warning: the CPUs were ${busyBefore} % busy before the run; other work will skew the figures`);
  const failures: string[] = [];
  const notes: string[] = [];
  // The replay's domain is the one loaded now; the engine loads its own when it starts.
  const sourceAtStart = sourceFingerprint(join(REPO_ROOT, 'src'));
  const programPath = resolve(REPO_ROOT, parameters.programFile);
  const program = loadProgramFile(programPath);
  const model = programModelOf(program);
  adjustMix(parameters, model, notes);
  if (shape !== null) progress.log(`scenario ${parameters.scenario}: ${shape.description}`);

  const spoolDir = makeTempDir('spool');
  const unregisterSpool = registerCleanup(async () => spoolDir.remove(), () => spoolDir.remove());
  let result: BenchResult;
  try {
    const spool = generate(parameters, model, spoolDir.path, progress);
    const warmup = parameters.warmupEvents > 0 && parameters.baseline !== 'only' ? generateWarmup(parameters, model, spoolDir.path) : null;

    let baseline: RawBaselineResult | null = null;
    let postgres: PostgresBaselineResult | null = null;
    if (parameters.baseline !== 'off') {
      progress.log(`baselines: own nats-server and stream; raw consume (ack-all every 1,000) ${parameters.baselineRepeats} passes, then the PostgreSQL ledger`);
      // The outcomes the engine's contract publishes for these events, decided by the pure domain (first chunk).
      const outcomeSample = sampleOutcomes(spool, programPath);
      const outcome = await runRawBaseline<PostgresBaselineResult>({
        spool,
        repeats: parameters.baselineRepeats,
        outcomeSample,
        onProgress: (phase, done, total) => progress.update(`${bar(done / total)} ${phase}: ${formatCount(done)}/${formatCount(total)}`),
        after:
          parameters.postgres === 'off'
            ? undefined
            : (shared) =>
                runPostgresLedger({
                  ...shared,
                  encoding: spool.encoding,
                  program: model,
                  batchEvents: parameters.postgresBatchEvents,
                  install: true,
                  timeoutMs: Math.max(120_000, spool.count),
                  log: (line) => progress.log(line),
                  onProgress: (done, total) => progress.update(`${bar(done / total)} postgres ledger: ${formatCount(done)}/${formatCount(total)}`),
                }),
      });
      baseline = outcome.raw;
      postgres = outcome.extra ?? skippedPostgres('--postgres off');
      progress.log(
        `raw baseline: consume ${formatCount(baseline.consume.ratePerSecond)} msg/s (median), ingest ${formatCount(baseline.ingest.storedPerSecond)} msg/s`,
      );
      if (baseline.contract !== null) {
        progress.log(
          `contract ceiling: consume + ack-all + ${baseline.contract.outcomesPerEvent.toFixed(2)} outcome messages per event into JetStream (PubAcks): ${formatCount(baseline.contract.ratePerSecond)} events/s (median)`,
        );
        if (!baseline.contract.complete) failures.push('the contract ceiling baseline did not consume, publish and ack every message');
      }
      progress.log(
        postgres.status === 'measured'
          ? `postgres baseline: ${formatCount(postgres.eventsPerSecond)} events/s (${postgres.batchEvents} per transaction)`
          : `postgres baseline ${postgres.status}: ${postgres.note}`,
      );
      if (!baseline.consume.complete) failures.push('the raw baseline did not consume and ack every message');
      if (baseline.ingest.stream.lost > 0) failures.push(`the raw baseline stream lost ${baseline.ingest.stream.lost} published messages`);
      if (postgres.status !== 'measured' && parameters.postgres === 'on') failures.push(`the PostgreSQL baseline was not measured: ${postgres.note}`);
      else if (postgres.status === 'failed') notes.push(`the PostgreSQL baseline failed: ${postgres.note}`);
      else if (postgres.status === 'skipped' && parameters.postgres !== 'off') notes.push(`the PostgreSQL baseline was skipped: ${postgres.note}`);
      if (postgres.check !== null && !postgres.check.ok) failures.push(`the PostgreSQL baseline's own check failed: ${JSON.stringify(postgres.check)}`);
    }

    let engine: EngineRunResult | null = null;
    let engineError: string | null = null;
    let correctness: CorrectnessResult = skippedCorrectness('no engine run');
    if (parameters.baseline !== 'only') {
      if (!engineAvailable()) {
        failures.push(`the engine was not run: ${ENGINE_ENTRY} does not exist yet`);
      } else {
        let output: EngineRunOutput | undefined;
        try {
          output = await runEngineScenario({
            spool,
            warmup,
            shape,
            scenario: parameters.scenario,
            programFile: parameters.programFile,
            pointsCurrency: model.pointsCurrency,
            engineEnv: parameters.engineEnv,
            timeoutSeconds: parameters.timeoutSeconds,
            stallSeconds: parameters.stallSeconds,
            progress,
            resultsDir,
            runStamp,
          });
          engine = output.result;
          judgeEngineRun(engine, spool, failures, notes);
          if (output.sourceFingerprint !== sourceAtStart) {
            failures.push(
              'src/ changed between the bench\'s start and the engine\'s start (a shared working tree): the engine and the replay ran different code; rerun',
            );
          }
          if (parameters.verify === 'on') {
            progress.log('correctness: replaying the published events through the domain and comparing with the engine');
            correctness = await replayAndCompare({
              spool,
              programFile: programPath,
              collector: output.collector,
              dataDir: output.dataDir,
              runComplete: engine.ended === 'all-done' || engine.ended === 'acked-all',
              onProgress: (text) => progress.update(text),
            });
            progress.log(
              `correctness: ${correctness.passed ? 'PASSED' : 'FAILED'} in ${(correctness.durationMs / 1000).toFixed(1)} s (${correctness.note})`,
            );
            if (!correctness.passed) failures.push('the engine\'s results differ from the replay of the published events (see correctness)');
          } else correctness = skippedCorrectness('--verify off');
        } catch (error) {
          // The engine failing (not starting, dying mid-run) is a result, not a crash of the bench: keep the baselines.
          progress.clear();
          engineError = error instanceof Error ? error.message : String(error);
          failures.push(`the engine run failed: ${engineError.split('\n')[0]}`);
          correctness = skippedCorrectness('the engine run failed');
        } finally {
          output?.removeDataDir();
        }
      }
    }
    if (!correctness.checked) notes.push(`correctness not checked: ${correctness.note}`);
    const others = [
      ['baselines', baseline?.otherProcessesCpuPercentMean],
      ['engine run', engine?.usage.otherProcessesCpuPercentMean],
    ] as const;
    for (const [phase, percent] of others) {
      if (percent !== null && percent !== undefined && percent > OTHER_CPU_PERCENT_WARNING) {
        notes.push(`other processes used ${percent} % of a core during the ${phase}: its figures are skewed low; rerun on a quiet machine`);
      }
    }
    if (machineBusy) notes.push(`the CPUs were ${busyBefore} % busy with other work just before the run: figures may be low`);
    if (engine !== null) {
      notes.push(
        `the engine ran with ${Object.entries(engine.engineEnv)
          .map(([name, value]) => `${name}=${value}`)
          .join(', ')}: the scheduled sweep (wall-clock expiry and release) is kept out of the run so that event time alone drives the rules the check replays`,
      );
    }

    const capacity = engine === null ? null : capacityOf(engine);
    const load: LoadFacts = {
      generateMs: Math.round(spool.facts.generateMs),
      generatorEventsPerSecond: spool.facts.eventsPerSecond,
      meanPayloadBytes: spool.facts.payloadBytes / spool.count,
      payloadBytesTotal: spool.facts.payloadBytes,
      distinctMembers: spool.facts.distinctMembers,
      hottestMemberShare: spool.facts.hottestMemberShare,
      generator: spool.facts.stats,
      chunks: spool.chunks.length,
    };
    result = {
      schemaVersion: RESULT_SCHEMA_VERSION,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      verdict: 'PASSED',
      failures,
      notes,
      environment,
      parameters,
      load,
      baseline,
      postgres,
      engine,
      engineError,
      ratios: {
        engineToRawConsume: ratio(capacity?.eventsPerSecond, baseline?.consume.ratePerSecond),
        engineToContractCeiling: ratio(capacity?.eventsPerSecond, baseline?.contract?.ratePerSecond),
        engineToPostgres: ratio(capacity?.eventsPerSecond, postgres?.status === 'measured' ? postgres.eventsPerSecond : null),
        capacityBasis: capacity?.basis ?? 'no engine run',
        capacityEventsPerSecond: capacity?.eventsPerSecond ?? null,
      },
      targets: [],
      correctness,
    };
    result.targets = judgeTargets(result);
    result.verdict = failures.length === 0 ? 'PASSED' : 'FAILED';
  } finally {
    unregisterSpool();
    spoolDir.remove();
  }
  const file = writeResultFile(result, runStamp, resultsDir);
  const html = writeHtmlReport(result, runStamp, resultsDir);
  progress.clear();
  process.stdout.write(`\n${renderTable(result, file, html)}\n`);
  return result.verdict === 'PASSED' ? 0 : 1;
}

/**
 * The engine's capacity figure for the ratios: its committed rate while it
 * was the bottleneck (a backlog in the stream); when it never was, the best
 * 5-second rate, which is then only a lower bound (it kept up with the offer).
 */
function capacityOf(engine: EngineRunResult): { eventsPerSecond: number; basis: string } | null {
  const { throughput } = engine;
  if (throughput.saturatedEventsPerSecond !== null) {
    return {
      eventsPerSecond: throughput.saturatedEventsPerSecond,
      basis: `mean committed rate over the ${throughput.saturatedSeconds} s the engine had a backlog (the engine was the bottleneck)`,
    };
  }
  if (Number.isFinite(throughput.peak5sEventsPerSecond)) {
    return {
      eventsPerSecond: throughput.peak5sEventsPerSecond,
      basis: 'best 5-second committed rate; the engine kept up with the schedule, so its capacity is at least this (a lower bound)',
    };
  }
  return null;
}

/** Drops kinds the program cannot take, saying so. */
function adjustMix(parameters: BenchParameters, model: ProgramModel, notes: string[]): void {
  const unsupported: [EventKind, boolean, string][] = [
    ['return', model.returnWindowDays === null, 'the program takes no returns'],
    ['redemption', model.rewards.length === 0, 'the program has no reward every tier may redeem'],
    ['activity', model.activities.length === 0, 'the program rewards no activities'],
  ];
  for (const [kind, missing, why] of unsupported) {
    if (missing && parameters.mix[kind] > 0) {
      notes.push(`no ${kind} events: ${why} (mix weight ${parameters.mix[kind]} dropped)`);
      parameters.mix[kind] = 0;
    }
  }
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

function generatorOptions(parameters: BenchParameters, model: ProgramModel): GeneratorOptions {
  return {
    ...DEFAULT_GENERATOR_OPTIONS,
    seed: parameters.seed,
    runId: parameters.runId,
    members: parameters.members,
    zipfExponent: parameters.zipfExponent,
    mix: parameters.mix,
    count: parameters.events,
    program: model,
  };
}

/** The warm-up: purchases by other members `w<rank>` with ids `e<runId>w-<i>`, in event time before the measured load. */
function generateWarmup(parameters: BenchParameters, model: ProgramModel, dir: string): Spool {
  const base = generatorOptions(parameters, model);
  return writeSpool({
    generator: {
      ...base,
      seed: (base.seed + 1) >>> 0,
      runId: `${parameters.runId}w`,
      memberPrefix: 'w',
      members: Math.min(parameters.members, 100_000),
      mix: { purchase: 1 },
      count: parameters.warmupEvents,
      clock: WARMUP_CLOCK,
    },
    encoding: parameters.encoding,
    dir,
    name: 'warmup.spool',
    chunkEvents: parameters.chunkEvents,
  });
}

function generate(parameters: BenchParameters, model: ProgramModel, dir: string, progress: Progress): Spool {
  const mix = EVENT_KINDS.filter((kind) => parameters.mix[kind] > 0)
    .map((kind) => `${kind} ${parameters.mix[kind]}`)
    .join(', ');
  progress.log(
    `generating ${formatCount(parameters.events)} events (${parameters.encoding}, ${formatCount(parameters.members)} members, mix ${mix}, seed ${parameters.seed}) ` +
      `in chunks of ${formatCount(parameters.chunkEvents)} before any clock starts`,
  );
  const spool = writeSpool({
    generator: generatorOptions(parameters, model),
    encoding: parameters.encoding,
    dir,
    chunkEvents: parameters.chunkEvents,
    onProgress: (done, total) => progress.update(`${bar(done / total)} generating: ${formatCount(done)}/${formatCount(total)}`),
  });
  const { facts } = spool;
  progress.log(
    `generated ${formatCount(facts.count)} events in ${(facts.generateMs / 1000).toFixed(1)} s (${formatCount(facts.eventsPerSecond)}/s), ` +
      `${formatCount(facts.payloadBytes / facts.count)} B each on average, ${formatCount(facts.distinctMembers)} distinct members; ` +
      EVENT_KINDS.map((kind) => `${kind} ${formatCount(facts.stats.byKind[kind])}`).join(', '),
  );
  return spool;
}

function judgeEngineRun(engine: EngineRunResult, spool: Spool, failures: string[], notes: string[]): void {
  if (engine.publish.published < spool.count) failures.push(`only ${engine.publish.published} of ${spool.count} events were published (${engine.ended})`);
  if (engine.stream === null) failures.push('the stream count was not checked (the engine exited while publishing)');
  else if (engine.stream.lost > 0) failures.push(`${engine.stream.lost} published events never reached the stream ${engine.stream.stream}`);
  if (engine.ended !== 'all-done' && engine.ended !== 'acked-all') {
    failures.push(`the run did not complete: ${spool.count - engine.throughput.eventsDone} of ${spool.count} events got no outcome (ended: ${engine.ended})`);
  } else if (engine.ended === 'acked-all') {
    notes.push(
      `${spool.count - engine.throughput.eventsDone} events were acked by the engine without any outcome; the correctness check says whether none was due`,
    );
  }
  const deadLetters = engine.deadLetters.stream ?? engine.deadLetters.metric ?? 0;
  if (deadLetters > 0) failures.push(`${deadLetters} generated events were dead-lettered (all are valid by the contract)`);
  const rejected = engine.outcomes.byKind.rejected ?? 0;
  if (rejected > 0) {
    notes.push(
      `${formatCount(rejected)} events were refused by the program (${Object.entries(engine.outcomes.rejectionCodes)
        .map(([code, count]) => `${code} ${count}`)
        .join(', ')}); the correctness check says whether each refusal was due`,
    );
  }
  if (engine.shutdown === null || engine.shutdown.killed) failures.push('the engine did not stop within 30 s of SIGTERM');
  else if (engine.shutdown.code !== 0) failures.push(`the engine exited with code ${engine.shutdown.code ?? engine.shutdown.signal} after SIGTERM`);
  if (engine.outcomes.duplicateOutcomes > 0) notes.push(`${engine.outcomes.duplicateOutcomes} outcomes were received twice (redelivery or outbox re-publish)`);
  if (engine.outcomes.unparsable > 0) notes.push(`${engine.outcomes.unparsable} unparsable outcomes were ignored`);
  if (engine.metrics.errors.length > 0) notes.push(`/metrics could not always be read: ${engine.metrics.errors.join('; ')}`);
  if (engine.shape === null) {
    notes.push('scenario max publishes everything at once: latency is mostly time queued in the stream behind the backlog; use steady for service latency');
  } else if (engine.throughput.saturatedSeconds > 0) {
    notes.push(
      `the engine fell behind the schedule for ${engine.throughput.saturatedSeconds} s (stream backlog > 1,000): latency then includes queueing behind the backlog`,
    );
  }
  if (engine.publish.behindScheduleMsMax > 100) {
    notes.push(`the bench's publisher fell up to ${engine.publish.behindScheduleMsMax} ms behind its schedule (it caught up; that much latency is the bench's own)`);
  }
  const stats = spool.facts.stats;
  if (stats.redemptionsUnfunded + stats.activitiesCapped + stats.returnsReplacedByPurchases > 0) {
    notes.push(
      `generator: ${stats.redemptionsUnfunded} redemptions went to members it could not be sure had the points, ${stats.activitiesCapped} activities to members at every cap, ` +
        `${stats.returnsReplacedByPurchases} returns found no returnable order and became purchases`,
    );
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`\nbench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
