import { EVENT_KINDS } from '../generator/events.js';
import { percentileKey, REPORTED_PERCENTILES } from '../measure/percentiles.js';
import { formatBytes, formatCount, formatMs } from './progress.js';
import type { BenchResult } from './result.js';
import { targetSummary, VERDICT_MEANING } from './targets.js';

/** The terminal report: one row per figure, label / value / context. */

type Row = readonly [label: string, value: string, context?: string] | 'rule';

export function renderTable(result: BenchResult, resultFile: string | null, htmlFile: string | null): string {
  const { parameters, load, baseline, postgres, engine, correctness, ratios } = result;
  const rows: Row[] = [];

  if (engine !== null) {
    const capacity = ratios.capacityEventsPerSecond;
    rows.push([
      'Engine capacity (committed/s under backlog)',
      engine.throughput.saturatedEventsPerSecond === null ? 'not reached' : `${formatCount(engine.throughput.saturatedEventsPerSecond)} events/s`,
      engine.throughput.saturatedEventsPerSecond === null
        ? 'the engine kept up with the schedule'
        : `over ${engine.throughput.saturatedSeconds} s with a stream backlog`,
    ]);
    if (engine.shape !== null && engine.throughput.fellBehindAtOfferedPerSecond !== null) {
      rows.push([
        'Engine fell behind at',
        `${formatCount(engine.throughput.fellBehindAtOfferedPerSecond)} events/s offered`,
        `second ${engine.throughput.fellBehindAtSecond} of the schedule`,
      ]);
    }
    rows.push(['Engine end-to-end, committed', `${formatCount(engine.throughput.eventsPerSecond)} events/s`, 'all events ÷ (last outcome − first publish)']);
    rows.push(['Engine steady (10–90 % of completions)', `${formatCount(engine.throughput.steadyEventsPerSecond)} events/s`]);
    rows.push(['Engine best 5 s', `${formatCount(engine.throughput.peak5sEventsPerSecond)} events/s`]);
    if (capacity !== null) {
      rows.push([
        '  ÷ raw JetStream consume',
        ratios.engineToRawConsume === null ? '-' : `${(ratios.engineToRawConsume * 100).toFixed(1)} %`,
        `capacity basis: ${ratios.capacityBasis}`,
      ]);
      rows.push([
        '  ÷ contract transport ceiling',
        ratios.engineToContractCeiling === null ? '-' : `${(ratios.engineToContractCeiling * 100).toFixed(1)} %`,
        baseline?.contract == null
          ? 'no baseline in this run'
          : `of ${formatCount(baseline.contract.ratePerSecond)} events/s: consume + ack-all + ${baseline.contract.outcomesPerEvent.toFixed(2)} outcome messages per event with PubAcks`,
      ]);
      rows.push(['  ÷ PostgreSQL ledger', ratios.engineToPostgres === null ? '-' : `${ratios.engineToPostgres.toFixed(2)} ×`]);
    }
    if (engine.usage.engineCpuMicrosPerEvent != null) {
      rows.push(['Engine CPU per event', `${engine.usage.engineCpuMicrosPerEvent.toFixed(1)} µs`, 'every engine thread, over the measured run']);
      const total = engine.usage.engineThreads.reduce((sum, thread) => sum + thread.seconds, 0);
      const busiest = engine.usage.engineThreads.filter((thread) => thread.seconds >= total * 0.02);
      busiest.forEach((thread, index) => {
        rows.push([
          index === 0 ? `  by thread  ${thread.role}` : `             ${thread.role}`,
          `${((thread.seconds / Math.max(total, 1e-9)) * 100).toFixed(1)} %`,
          `${thread.seconds.toFixed(2)} s CPU, ${thread.systemSeconds.toFixed(2)} s of it in the kernel`,
        ]);
      });
    }
    REPORTED_PERCENTILES.forEach((percentile, index) => {
      rows.push([
        index === 0 ? `Latency publish → outcome  ${percentileKey(percentile)}` : `                           ${percentileKey(percentile)}`,
        formatMs(engine.latencyMs.percentiles[percentileKey(percentile)] ?? Number.NaN),
        index === 0 ? `${formatCount(engine.latencyMs.count)} events` : '',
      ]);
    });
    rows.push(['                           max', formatMs(engine.latencyMs.max)]);
    if (engine.latencyFromScheduleMs !== null) {
      rows.push([
        'Latency from the schedule  p50 / p99',
        `${formatMs(engine.latencyFromScheduleMs.percentiles.p50 ?? Number.NaN)} / ${formatMs(engine.latencyFromScheduleMs.percentiles.p99 ?? Number.NaN)}`,
        'from when the event was due: includes the bench\'s own lateness',
      ]);
    }
    rows.push([
      'Consumer lag max (JetStream)',
      `${formatCount(engine.lag.streamPendingMax ?? Number.NaN)} pending`,
      `${formatCount(engine.lag.ackPendingMax ?? Number.NaN)} delivered unacked; engine gauge max ${formatCount(engine.lag.metricsPendingMax ?? Number.NaN)}`,
    ]);
    rows.push([
      'Publisher (this bench)',
      `${formatCount(engine.publish.ratePerSecond)} events/s`,
      engine.shape === null ? 'as fast as possible' : `on schedule; at most ${formatCount(engine.publish.behindScheduleMsMax)} ms behind`,
    ]);
    if (engine.warmup !== null) {
      rows.push(['Warm-up (other members, not measured)', `${formatCount(engine.warmup.events)} events`, `${engine.warmup.ended} in ${(engine.warmup.durationMs / 1000).toFixed(1)} s`]);
    }
    rows.push([
      'Stream stored / published',
      engine.stream === null ? 'not checked' : `${formatCount(engine.stream.stored)} / ${formatCount(engine.publish.published)}`,
      engine.stream === null ? '' : `${formatCount(engine.stream.lost)} lost`,
    ]);
    rows.push([
      'Events with an outcome',
      `${formatCount(engine.throughput.eventsDone)} / ${formatCount(parameters.events)}`,
      `ended: ${engine.ended}; rejected ${formatCount(engine.outcomes.byKind.rejected ?? 0)}; duplicate outcomes ${formatCount(engine.outcomes.duplicateOutcomes)}`,
    ]);
    rows.push(['Dead letters', formatCount(engine.deadLetters.stream ?? engine.deadLetters.metric ?? Number.NaN), 'LOYALTY_DLQ messages at the end']);
    rows.push(['Engine CPU mean / max', `${engine.usage.engine.cpuPercentMean.toFixed(0)} % / ${engine.usage.engine.cpuPercentMax.toFixed(0)} %`, '% of one core, all threads']);
    rows.push([
      'Engine memory max: private / RSS',
      `${formatBytes(engine.usage.engine.rssAnonBytesMax)} / ${formatBytes(engine.usage.engine.rssBytesMax)}`,
      `RssAnon / VmRSS; V8 heap max: main ${formatBytes(engine.usage.engineHeapUsedBytesMax ?? Number.NaN)}, actors ${formatBytes(engine.usage.actorHeapUsedBytesMax ?? Number.NaN)}; ` +
        `cached members max ${formatCount(engine.usage.cachedMembersMax ?? Number.NaN)}`,
    ]);
    if (engine.usage.batchEventsMean !== null && engine.usage.batchEventsMean !== undefined) {
      rows.push(['Actor batch mean', `${engine.usage.batchEventsMean} events`, 'loyalty_batch_size_events sum ÷ count over the run (the most is LOYALTY_BATCH_SIZE_MAX)']);
    }
    rows.push(['nats-server CPU mean', `${engine.usage.natsServer.cpuPercentMean.toFixed(0)} %`, `RSS max ${formatBytes(engine.usage.natsServer.rssBytesMax)}`]);
    rows.push(['Bench client CPU mean', `${engine.usage.benchClient.cpuPercentMean.toFixed(0)} %`, 'publisher + outcome subscriber']);
    if (engine.usage.otherProcessesCpuPercentMean !== null) {
      rows.push(['Other processes CPU mean', `${engine.usage.otherProcessesCpuPercentMean.toFixed(0)} %`, 'should be near 0: anything else running skews the figures']);
    }
    if (engine.shutdown !== null) {
      rows.push([
        'Engine shutdown (SIGTERM)',
        engine.shutdown.killed ? 'KILLED' : `exit ${engine.shutdown.code ?? engine.shutdown.signal}`,
        `${formatCount(engine.shutdown.stopMs)} ms; data dir ${formatBytes(engine.shutdown.dataDirBytes)}`,
      ]);
    }
  }
  if (baseline !== null) {
    if (rows.length > 0) rows.push('rule');
    rows.push([
      `Raw JetStream consume + ack-all (median of ${baseline.consume.passes.length})`,
      `${formatCount(baseline.consume.ratePerSecond)} msg/s`,
      `min ${formatCount(baseline.consume.minRatePerSecond)}, max ${formatCount(baseline.consume.maxRatePerSecond)}; ack every ${formatCount(baseline.consume.ackEvery)}` +
        (baseline.consume.complete ? '' : '; INCOMPLETE'),
    ]);
    if (baseline.contract != null) {
      rows.push([
        `Contract ceiling: consume + ack-all + outcomes (median of ${baseline.contract.passes.length})`,
        `${formatCount(baseline.contract.ratePerSecond)} events/s`,
        `${baseline.contract.outcomesPerEvent.toFixed(2)} outcome messages per event (${Math.round(baseline.contract.meanOutcomeBytes)} B), each a JetStream publish with Nats-Msg-Id and a PubAck` +
          (baseline.contract.complete ? '' : '; INCOMPLETE'),
      ]);
    }
    rows.push(['Raw JetStream ingest (core publish → stored)', `${formatCount(baseline.ingest.storedPerSecond)} msg/s`, `${formatCount(baseline.ingest.stream.lost)} lost`]);
  }
  if (postgres !== null) {
    rows.push(
      postgres.status === 'measured'
        ? [
            `PostgreSQL ledger (${postgres.batchEvents} events / transaction)`,
            `${formatCount(postgres.eventsPerSecond)} events/s`,
            `transaction p50 ${formatMs(postgres.transactionMs?.percentiles.p50 ?? Number.NaN)}, p99 ${formatMs(postgres.transactionMs?.percentiles.p99 ?? Number.NaN)}; ` +
              `postgres CPU ${postgres.postgresUsage?.cpuPercentMean.toFixed(0) ?? '-'} %; check ${postgres.check?.ok === true ? 'ok' : 'FAILED'}`,
          ]
        : ['PostgreSQL ledger', postgres.status, postgres.note],
    );
  }
  rows.push('rule');
  rows.push([
    'Correctness',
    correctness.checked ? (correctness.passed ? 'PASSED' : 'FAILED') : 'not checked',
    correctness.checked
      ? `${correctness.note}; ${formatCount(correctness.outcomeMismatches)} wrong outcomes, ${formatCount(correctness.missingOutcomes)} missing, ` +
        `${formatCount(correctness.walletMismatches)} wrong wallets of ${formatCount(correctness.walletsCompared)}`
      : correctness.note,
  ]);
  for (const budget of correctness.budgets) {
    rows.push([
      `  budget ${budget.promotionId}`,
      `${formatCount(budget.grantedPoints)} pts`,
      `limit ${formatCount(budget.limitPoints ?? Number.NaN)}; ${formatCount(budget.fullGrants)} full, ${formatCount(budget.partial)} partial, ${formatCount(budget.refused)} refused; ` +
        `engine committed ${formatCount(budget.engineCommittedPoints ?? Number.NaN)}${budget.problems.length > 0 ? `; ${budget.problems.join('; ')}` : ''}`,
    ]);
  }
  rows.push([
    'Generator (chunked, untimed)',
    `${formatCount(load.generatorEventsPerSecond)} events/s`,
    `${formatCount(load.meanPayloadBytes)} B per event; ` + EVENT_KINDS.map((kind) => `${kind} ${formatCount(load.generator.byKind[kind])}`).join(', '),
  ]);
  if (result.targets.length > 0) {
    rows.push('rule');
    for (const target of result.targets) {
      rows.push([target.target, target.met === null ? 'n/a' : target.met ? 'MET' : 'NOT MET', `${target.measured ?? '-'}; ${target.conditions}`]);
    }
  }

  const header = [
    `Loyalty engine bench: ${parameters.baseline === 'only' ? 'baselines only' : parameters.scenario}  ${result.verdict === 'PASSED' ? 'correct: PASSED' : 'FAILED'}` +
      (result.targets.some((target) => target.met !== null) ? `  ·  ${targetSummary(result).text}` : ''),
    VERDICT_MEANING,
    parameters.shape ?? `${formatCount(parameters.events)} events as fast as possible`,
    `${formatCount(parameters.events)} events, ${formatCount(parameters.members)} members (Zipf s=${parameters.zipfExponent}; ${formatCount(load.distinctMembers)} seen, hottest ${(load.hottestMemberShare * 100).toFixed(1)} % of events), ` +
      `${parameters.encoding}, seed ${parameters.seed}`,
    `program ${parameters.programFile}; ${result.environment.cpuCount} × ${result.environment.cpuModel}; node ${result.environment.node}; ${result.environment.natsServer}`,
  ];
  const lines = [...header, '', ...formatRows(rows)];
  if (result.failures.length > 0) lines.push('', 'FAILED because:', ...result.failures.map((failure) => `  - ${failure}`));
  if (result.engineError !== null) lines.push('', 'Engine run error:', ...result.engineError.split('\n').slice(0, 20).map((line) => `  ${line}`));
  if (correctness.samples.length > 0) {
    lines.push('', 'Correctness samples:');
    for (const sample of correctness.samples.slice(0, 10)) {
      lines.push(`  event ${sample.eventIndex} ${sample.memberId} ${sample.type}: ${sample.what}: expected ${sample.expected}; engine ${sample.engine}`);
    }
  }
  if (result.notes.length > 0) lines.push('', 'Notes:', ...result.notes.map((note) => `  - ${note}`));
  if (resultFile !== null) lines.push('', `Result file: ${resultFile}`);
  if (htmlFile !== null) lines.push(`HTML report: ${htmlFile}`);
  if (engine?.engineLogFile) lines.push(`Engine log:  ${engine.engineLogFile}`);
  return lines.join('\n');
}

function formatRows(rows: readonly Row[]): string[] {
  const data = rows.filter((row): row is Exclude<Row, 'rule'> => row !== 'rule');
  const labelWidth = Math.max(...data.map((row) => row[0].length));
  const valueWidth = Math.max(...data.map((row) => row[1].length));
  const total = labelWidth + valueWidth + 4 + Math.max(0, ...data.map((row) => (row[2] ?? '').length));
  return rows.map((row) =>
    row === 'rule' ? '─'.repeat(Math.min(total, 120)) : `${row[0].padEnd(labelWidth)}  ${row[1].padStart(valueWidth)}  ${row[2] ?? ''}`.trimEnd(),
  );
}
