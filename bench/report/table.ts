import { percentileKey, REPORTED_PERCENTILES } from '../measure/percentiles.js';
import { formatBytes, formatCount, formatMs } from './progress.js';
import type { BenchResult } from './result.js';

/** The terminal report: one row per figure, label / value / context. */

type Row = readonly [label: string, value: string, context?: string] | 'rule';

export function renderTable(result: BenchResult, resultFile: string | null): string {
  const { parameters, load, baseline, engine, correctness } = result;
  const rows: Row[] = [];
  const rawRate = baseline?.consume.ratePerSecond;

  if (baseline !== null) {
    rows.push([
      `Raw JetStream consume + ack-all (median of ${baseline.consume.passes.length})`,
      `${formatCount(baseline.consume.ratePerSecond)} msg/s`,
      `min ${formatCount(baseline.consume.minRatePerSecond)}, max ${formatCount(baseline.consume.maxRatePerSecond)}; ack every ${formatCount(baseline.consume.ackEvery)}` +
        (baseline.otherProcessesCpuPercentMean === null ? '' : `; other processes ${baseline.otherProcessesCpuPercentMean.toFixed(0)} % CPU`) +
        (baseline.consume.complete ? '' : '; INCOMPLETE'),
    ]);
    rows.push([
      'Raw JetStream ingest (core publish → stored)',
      `${formatCount(baseline.ingest.storedPerSecond)} msg/s`,
      `${formatCount(baseline.ingest.stream.stored)} stored, ${formatCount(baseline.ingest.stream.lost)} lost`,
    ]);
  }
  if (engine !== null) {
    if (rows.length > 0) rows.push('rule');
    const ratioText = (value: number | null): string => (value === null ? '' : `${value.toFixed(2)} × raw consume`);
    rows.push(['Engine end-to-end, committed', `${formatCount(engine.throughput.eventsPerSecond)} events/s`, ratioText(result.ratios.engineToRawConsume)]);
    rows.push([
      'Engine steady (10–90 % of completions)',
      `${formatCount(engine.throughput.steadyEventsPerSecond)} events/s`,
      ratioText(result.ratios.engineSteadyToRawConsume),
    ]);
    REPORTED_PERCENTILES.forEach((percentile, index) => {
      rows.push([
        index === 0 ? `Latency publish → outcome  ${percentileKey(percentile)}` : `                           ${percentileKey(percentile)}`,
        formatMs(engine.latencyMs.percentiles[percentileKey(percentile)] ?? Number.NaN),
        index === 0 ? `${formatCount(engine.latencyMs.count)} events` : '',
      ]);
    });
    rows.push(['                           max', formatMs(engine.latencyMs.max)]);
    if (engine.warmup !== null) {
      rows.push([
        'Warm-up (other members, not measured)',
        `${formatCount(engine.warmup.events)} events`,
        `${engine.warmup.ended} in ${(engine.warmup.durationMs / 1000).toFixed(1)} s`,
      ]);
    }
    rows.push([
      'Publisher rate (this bench)',
      `${formatCount(engine.publish.ratePerSecond)} events/s`,
      parameters.ratePerSecond === null ? 'target unlimited' : `target ${formatCount(parameters.ratePerSecond)}/s`,
    ]);
    rows.push([
      'Stream stored / published',
      engine.stream === null ? 'not checked' : `${formatCount(engine.stream.stored)} / ${formatCount(engine.publish.published)}`,
      engine.stream === null ? '' : `${formatCount(engine.stream.lost)} lost`,
    ]);
    rows.push([
      'Events with an outcome',
      `${formatCount(engine.throughput.eventsDone)} / ${formatCount(parameters.events)}`,
      `ended: ${engine.ended}; rejected ${formatCount(engine.outcomes.byKind.rejected ?? 0)}, duplicate outcomes ${formatCount(engine.outcomes.duplicateOutcomes)}`,
    ]);
    rows.push([
      'Engine CPU mean / max',
      `${engine.usage.engine.cpuPercentMean.toFixed(0)} % / ${engine.usage.engine.cpuPercentMax.toFixed(0)} %`,
      '% of one core, all threads',
    ]);
    rows.push([
      'Engine memory max: RSS / private',
      `${formatBytes(engine.usage.engine.rssBytesMax)} / ${formatBytes(engine.usage.engine.rssAnonBytesMax)}`,
      'VmRSS / RssAnon',
    ]);
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
  rows.push('rule');
  rows.push(['Correctness (balances)', correctness.checked ? (correctness.passed ? 'PASSED' : 'FAILED') : 'not checked', correctnessContext(result)]);
  rows.push([
    'Generator (pre-generated, untimed)',
    `${formatCount(load.generatorEventsPerSecond)} events/s`,
    `${formatCount(load.meanPayloadBytes)} B per event`,
  ]);

  const header = [
    `Loyalty engine bench: ${parameters.baseline === 'only' ? 'raw JetStream baseline only' : parameters.scenario}  ${result.verdict}`,
    `${formatCount(parameters.events)} events, ${formatCount(parameters.members)} members (Zipf s=${parameters.zipfExponent}; ${formatCount(load.distinctMembers)} seen, hottest ${(load.hottestMemberShare * 100).toFixed(1)} % of events), ` +
      `${parameters.encoding}, rate ${parameters.ratePerSecond === null ? 'unlimited' : `${formatCount(parameters.ratePerSecond)}/s`}, seed ${parameters.seed}`,
    `program ${parameters.programFile}; ${result.environment.cpuCount} × ${result.environment.cpuModel}; node ${result.environment.node}; ${result.environment.natsServer}`,
  ];
  const lines = [...header, '', ...formatRows(rows)];
  if (result.failures.length > 0) lines.push('', 'FAILED because:', ...result.failures.map((failure) => `  - ${failure}`));
  if (result.engineError !== null) lines.push('', 'Engine run error:', ...result.engineError.split('\n').slice(0, 20).map((line) => `  ${line}`));
  if (result.notes.length > 0) lines.push('', 'Notes:', ...result.notes.map((note) => `  - ${note}`));
  if (resultFile !== null) lines.push('', `Result file: ${resultFile}`);
  if (engine?.engineLogFile) lines.push(`Engine log:  ${engine.engineLogFile}`);
  return lines.join('\n');
}

function correctnessContext(result: BenchResult): string {
  const correctness = result.correctness;
  if (!correctness.checked) return correctness.note;
  return (
    `${formatCount(correctness.eventsChecked)} events, ${formatCount(correctness.membersChecked)} members: ` +
    `${formatCount(correctness.eventBalanceMismatches)} wrong, ${formatCount(correctness.eventsWithoutBalance)} without balance, ` +
    `${formatCount(correctness.memberFinalMismatches)} final balances wrong`
  );
}

function formatRows(rows: readonly Row[]): string[] {
  const data = rows.filter((row): row is Exclude<Row, 'rule'> => row !== 'rule');
  const labelWidth = Math.max(...data.map((row) => row[0].length));
  const valueWidth = Math.max(...data.map((row) => row[1].length));
  const total = labelWidth + valueWidth + 4 + Math.max(0, ...data.map((row) => (row[2] ?? '').length));
  return rows.map((row) =>
    row === 'rule'
      ? '─'.repeat(Math.min(total, 120))
      : `${row[0].padEnd(labelWidth)}  ${row[1].padStart(valueWidth)}  ${row[2] ?? ''}`.trimEnd(),
  );
}
