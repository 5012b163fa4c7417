import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EVENT_KINDS } from '../generator/events.js';
import { percentileKey, REPORTED_PERCENTILES } from '../measure/percentiles.js';
import { formatBytes, formatCount, formatMs } from './progress.js';
import type { BenchResult } from './result.js';
import { targetSummary, VERDICT_MEANING } from './targets.js';
import { barChart, escapeHtml, lineChart, type Series } from './svg.js';

/**
 * The self-contained HTML report (bench/results/<timestamp>.html): the
 * verdict, the figures with their conditions, the targets, the baselines as
 * ratios, the correctness check, and every per-second series as inline SVG.
 * Nothing is loaded from anywhere: it opens from a file, offline.
 */

const COLORS = {
  published: '#7f8c8d',
  target: '#bdc3c7',
  committed: '#1f77b4',
  p50: '#2ca02c',
  p90: '#bcbd22',
  p99: '#ff7f0e',
  p999: '#d62728',
  lag: '#9467bd',
  ack: '#8c564b',
  gauge: '#e377c2',
  engine: '#1f77b4',
  nats: '#17becf',
  rss: '#aec7e8',
  anon: '#1f77b4',
  heap: '#ff7f0e',
  actorHeap: '#2ca02c',
  dlq: '#d62728',
  rejected: '#ff9896',
  raw: '#7f7f7f',
  postgres: '#336791',
};

export function renderHtml(result: BenchResult): string {
  const { parameters, engine, baseline, postgres, correctness, load, environment, ratios } = result;
  const sections: string[] = [];
  const verdictClass = result.verdict === 'PASSED' ? 'passed' : 'failed';
  const targets = targetSummary(result);
  sections.push(
    `<h1>Loyalty engine bench: ${escapeHtml(parameters.baseline === 'only' ? 'baselines only' : parameters.scenario)} ` +
      `<span class="badge ${verdictClass}">${result.verdict === 'PASSED' ? 'correct: PASSED' : 'FAILED'}</span>` +
      (targets.total > 0 ? ` <span class="badge ${targets.notMet > 0 ? 'failed' : 'passed'}">${escapeHtml(targets.text)}</span>` : '') +
      '</h1>',
  );
  sections.push(`<p class="verdict-note">${escapeHtml(VERDICT_MEANING)}</p>`);
  sections.push(
    `<p>${escapeHtml(parameters.shape ?? `${formatCount(parameters.events)} events as fast as possible`)}<br>` +
      `${escapeHtml(`${formatCount(parameters.events)} events, ${formatCount(parameters.members)} members (Zipf s=${parameters.zipfExponent}, ${formatCount(load.distinctMembers)} touched), ${parameters.encoding}, program ${parameters.programFile}, seed ${parameters.seed}`)}<br>` +
      `${escapeHtml(`${environment.cpuCount} × ${environment.cpuModel}, ${formatBytes(environment.memoryBytes)} RAM, ${environment.platform} ${environment.kernel}, node ${environment.node}, ${environment.natsServer}; commit ${environment.gitCommit ?? '?'}${environment.gitDirty === true ? ' (uncommitted changes)' : ''}; ${result.startedAt}`)}</p>`,
  );
  if (result.failures.length > 0) sections.push(`<h2>Failed because</h2><ul class="failures">${result.failures.map((failure) => `<li>${escapeHtml(failure)}</li>`).join('')}</ul>`);

  const rows: [string, string, string][] = [];
  if (engine !== null) {
    rows.push([
      'Engine capacity (committed/s while it had a backlog)',
      engine.throughput.saturatedEventsPerSecond === null ? 'not reached' : `${formatCount(engine.throughput.saturatedEventsPerSecond)} events/s`,
      engine.throughput.saturatedEventsPerSecond === null ? 'the engine kept up with the schedule' : `${engine.throughput.saturatedSeconds} s with a stream backlog > 1,000`,
    ]);
    if (engine.shape !== null && engine.throughput.fellBehindAtOfferedPerSecond !== null) {
      rows.push(['Engine fell behind at', `${formatCount(engine.throughput.fellBehindAtOfferedPerSecond)} events/s offered`, `second ${engine.throughput.fellBehindAtSecond} of the schedule`]);
    }
    rows.push(['Engine end-to-end, committed', `${formatCount(engine.throughput.eventsPerSecond)} events/s`, 'all events ÷ (last outcome − first publish)']);
    rows.push(['Engine steady (10–90 % of completions)', `${formatCount(engine.throughput.steadyEventsPerSecond)} events/s`, '']);
    rows.push(['Engine best 5 s', `${formatCount(engine.throughput.peak5sEventsPerSecond)} events/s`, '']);
    for (const percentile of REPORTED_PERCENTILES) {
      rows.push([`Latency publish → outcome ${percentileKey(percentile)}`, formatMs(engine.latencyMs.percentiles[percentileKey(percentile)] ?? Number.NaN), `${formatCount(engine.latencyMs.count)} events, exact`]);
    }
    if (engine.latencyFromScheduleMs !== null) {
      rows.push([
        'Latency from the schedule p50 / p99',
        `${formatMs(engine.latencyFromScheduleMs.percentiles.p50 ?? Number.NaN)} / ${formatMs(engine.latencyFromScheduleMs.percentiles.p99 ?? Number.NaN)}`,
        'from when the event was due on the schedule: what a client publishing on time saw, the bench\'s lateness included',
      ]);
    }
    rows.push(['Consumer lag max', `${formatCount(engine.lag.streamPendingMax ?? Number.NaN)} messages`, 'JetStream num_pending of the engine\'s consumer']);
    rows.push(['Engine CPU mean / max', `${engine.usage.engine.cpuPercentMean.toFixed(0)} % / ${engine.usage.engine.cpuPercentMax.toFixed(0)} %`, '% of one core, all threads']);
    rows.push([
      'Engine private memory (RssAnon) max',
      formatBytes(engine.usage.engine.rssAnonBytesMax),
      `VmRSS max ${formatBytes(engine.usage.engine.rssBytesMax)}; V8 heap max: main thread ${formatBytes(engine.usage.engineHeapUsedBytesMax ?? Number.NaN)}, ` +
        `actor threads ${formatBytes(engine.usage.actorHeapUsedBytesMax ?? Number.NaN)}; cached members max ${formatCount(engine.usage.cachedMembersMax ?? Number.NaN)}`,
    ]);
    rows.push(['Dead letters', formatCount(engine.deadLetters.stream ?? engine.deadLetters.metric ?? Number.NaN), 'LOYALTY_DLQ at the end']);
    rows.push([
      'Rejected by the program',
      formatCount(engine.outcomes.byKind.rejected ?? 0),
      Object.entries(engine.outcomes.rejectionCodes)
        .map(([code, count]) => `${code} ${count}`)
        .join(', '),
    ]);
    rows.push(['nats-server CPU mean', `${engine.usage.natsServer.cpuPercentMean.toFixed(0)} %`, '']);
    rows.push(['Bench client CPU mean', `${engine.usage.benchClient.cpuPercentMean.toFixed(0)} %`, 'publisher + outcome subscriber, same machine']);
    rows.push(['Other processes CPU mean', `${engine.usage.otherProcessesCpuPercentMean?.toFixed(0) ?? '-'} %`, 'near 0 on a quiet machine']);
  }
  if (baseline !== null) {
    rows.push(['Raw JetStream consume + ack-all', `${formatCount(baseline.consume.ratePerSecond)} msg/s`, `median of ${baseline.consume.passes.length} passes, ack every ${baseline.consume.ackEvery}`]);
  }
  if (postgres !== null) {
    rows.push([
      'PostgreSQL ledger consumer',
      postgres.status === 'measured' ? `${formatCount(postgres.eventsPerSecond)} events/s` : postgres.status,
      postgres.status === 'measured' ? `${postgres.batchEvents} events per transaction, ${postgres.version ?? ''}` : postgres.note,
    ]);
  }
  rows.push(['Engine ÷ raw JetStream consume', ratios.engineToRawConsume === null ? '-' : `${(ratios.engineToRawConsume * 100).toFixed(1)} %`, ratios.capacityBasis]);
  rows.push([
    'Engine ÷ contract transport ceiling',
    ratios.engineToContractCeiling == null ? '-' : `${(ratios.engineToContractCeiling * 100).toFixed(1)} %`,
    baseline?.contract == null ? '' : `of ${formatCount(baseline.contract.ratePerSecond)} events/s (consume + ack-all + ${baseline.contract.outcomesPerEvent.toFixed(2)} outcome messages per event, PubAcks)`,
  ]);
  if (engine?.usage.engineCpuMicrosPerEvent != null) {
    rows.push(['Engine CPU per event', `${engine.usage.engineCpuMicrosPerEvent.toFixed(1)} µs`, engine.usage.engineThreads.map((thread) => `${thread.role} ${thread.seconds.toFixed(1)} s`).join(', ')]);
  }
  rows.push(['Engine ÷ PostgreSQL ledger', ratios.engineToPostgres === null ? '-' : `${ratios.engineToPostgres.toFixed(2)} ×`, '']);
  sections.push(`<h2>Figures</h2>${table(['figure', 'value', 'conditions'], rows)}`);

  sections.push(
    `<h2>Targets (2-core machine)</h2>${table(
      ['target', 'result', 'measured', 'conditions'],
      result.targets.map((target) => [target.target, target.met === null ? 'n/a' : target.met ? 'MET' : 'NOT MET', target.measured ?? '-', target.conditions]),
      (row) => (row[1] === 'NOT MET' || row[1] === 'MET' ? [1] : []),
    )}`,
  );

  sections.push(
    barChart('Throughput against the baselines, same events, same run', 'events/s', [
      { label: 'Engine capacity', value: ratios.capacityEventsPerSecond, color: COLORS.committed, note: ratios.capacityEventsPerSecond === null ? undefined : engine?.throughput.saturatedEventsPerSecond === null ? '(lower bound)' : '' },
      { label: 'Raw JetStream consume + ack', value: baseline?.consume.ratePerSecond ?? null, color: COLORS.raw },
      {
        label: `PostgreSQL ledger (${postgres?.batchEvents ?? '-'} / tx)`,
        value: postgres?.status === 'measured' ? postgres.eventsPerSecond : null,
        color: COLORS.postgres,
        note: postgres?.status === 'measured' ? undefined : postgres?.note,
      },
    ]),
  );

  if (engine !== null && engine.timeline.length > 0) {
    const timeline = engine.timeline;
    const at = <T,>(pick: (point: (typeof timeline)[number]) => T): [number, T][] => timeline.map((point) => [point.tS, pick(point)]);
    const throughput: Series[] = [
      { name: 'committed/s', color: COLORS.committed, points: at((point) => point.donePerSecond) },
      { name: 'published/s', color: COLORS.published, points: at((point) => point.publishedPerSecond) },
    ];
    if (timeline.some((point) => point.targetPerSecond !== null)) throughput.push({ name: 'schedule/s', color: COLORS.target, points: at((point) => point.targetPerSecond), dashed: true });
    sections.push('<h2>Over time</h2>');
    sections.push(lineChart({ title: 'Throughput: published and committed events per second', xLabel: 'seconds since the first publish', yLabel: 'events/s', series: throughput }));
    sections.push(
      lineChart({
        title: 'Latency publish → outcome of the events completed each second',
        xLabel: 'seconds since the first publish',
        yLabel: 'ms',
        log: true,
        series: [
          // Each percentile its own colour, dash and width: the lines stay apart in grey print and for colour-blind readers.
          { name: 'p50 (solid)', color: COLORS.p50, strokeWidth: 2.4, points: at((point) => point.latencyMs?.p50 ?? null) },
          { name: 'p90 (dashed)', color: COLORS.p90, dash: '7 4', points: at((point) => point.latencyMs?.p90 ?? null) },
          { name: 'p99 (dotted)', color: COLORS.p99, dash: '2 3', strokeWidth: 2.2, points: at((point) => point.latencyMs?.p99 ?? null) },
          { name: 'p99.9 (dash-dot)', color: COLORS.p999, dash: '9 3 2 3', points: at((point) => point.latencyMs?.p999 ?? null) },
        ],
      }),
    );
    sections.push(
      lineChart({
        title: 'Consumer lag',
        xLabel: 'seconds since the first publish',
        yLabel: 'messages',
        series: [
          { name: 'JetStream pending (not delivered)', color: COLORS.lag, points: at((point) => point.streamPending) },
          { name: 'delivered, not acked', color: COLORS.ack, points: at((point) => point.ackPending) },
          { name: 'engine gauge loyalty_consumer_pending_messages', color: COLORS.gauge, points: at((point) => point.metricsPending), dashed: true },
        ],
      }),
    );
    sections.push(
      lineChart({
        title: 'CPU (% of one core; 200 % = both cores)',
        xLabel: 'seconds since the first publish',
        yLabel: '%',
        series: [
          { name: 'engine (all threads)', color: COLORS.engine, points: at((point) => point.engineCpuPercent) },
          { name: 'nats-server', color: COLORS.nats, points: at((point) => point.natsCpuPercent) },
        ],
      }),
    );
    const mib = (value: number | null): number | null => (value === null ? null : value / 1024 ** 2);
    sections.push(
      lineChart({
        title: 'Engine memory',
        xLabel: 'seconds since the first publish',
        yLabel: 'MiB',
        series: [
          { name: 'private (RssAnon)', color: COLORS.anon, points: at((point) => mib(point.engineRssAnonBytes)) },
          { name: 'resident (VmRSS, with mapped LMDB pages)', color: COLORS.rss, points: at((point) => mib(point.engineRssBytes)) },
          { name: 'main-thread V8 heap used', color: COLORS.heap, points: at((point) => mib(point.engineHeapUsedBytes)) },
          { name: 'actor threads\' V8 heap used', color: COLORS.actorHeap, points: at((point) => mib(point.actorHeapUsedBytes ?? null)) },
        ],
      }),
    );
    sections.push(
      lineChart({
        title: 'Dead letters and rejections (cumulative)',
        xLabel: 'seconds since the first publish',
        yLabel: 'events',
        series: [
          { name: 'dead letters (loyalty_dead_letters_total)', color: COLORS.dlq, points: at((point) => point.deadLetters) },
          { name: 'rejected by the program', color: COLORS.rejected, points: at((point) => point.rejected) },
        ],
      }),
    );
  }
  if (postgres !== null && postgres.timeline.length > 0) {
    sections.push(
      lineChart({
        title: 'PostgreSQL ledger baseline: committed events per second',
        xLabel: 'seconds since its first fetch',
        yLabel: 'events/s',
        y2Label: 'CPU, % of one core',
        series: [
          { name: 'committed/s', color: COLORS.postgres, points: postgres.timeline.map((point) => [point.tS, point.ratePerSecond] as const) },
          { name: 'postgres CPU %', color: COLORS.nats, axis: 'right', points: postgres.timeline.map((point) => [point.tS, point.postgresCpuPercent] as const), dashed: true },
        ],
      }),
    );
  }

  const correctnessRows: [string, string][] = [
    ['verdict', correctness.checked ? (correctness.passed ? 'PASSED' : 'FAILED') : 'not checked'],
    ['method', correctness.method],
    ['scope', correctness.note],
    ['wrong outcomes', formatCount(correctness.outcomeMismatches)],
    ['missing outcomes', formatCount(correctness.missingOutcomes)],
    ['wallets compared / wrong', `${formatCount(correctness.walletsCompared)} / ${formatCount(correctness.walletMismatches)}`],
    ['refusals the domain expects', Object.entries(correctness.expectedRejections).map(([code, count]) => `${code} ${count}`).join(', ') || 'none'],
  ];
  for (const budget of correctness.budgets) {
    correctnessRows.push([
      `global budget ${budget.promotionId}`,
      `${formatCount(budget.grantedPoints)} of ${formatCount(budget.limitPoints ?? Number.NaN)} points granted (${formatCount(budget.fullGrants)} full, ${formatCount(budget.partial)} partial, ${formatCount(budget.refused)} refused); ` +
        `engine committed ${formatCount(budget.engineCommittedPoints ?? Number.NaN)}${budget.problems.length > 0 ? `; PROBLEMS: ${budget.problems.join('; ')}` : ''}`,
    ]);
  }
  sections.push(`<h2>Correctness</h2>${table(['', ''], correctnessRows)}`);
  if (correctness.samples.length > 0) {
    sections.push(
      table(
        ['event', 'member', 'type', 'what', 'expected', 'engine'],
        correctness.samples.map((sample) => [String(sample.eventIndex), sample.memberId, sample.type, sample.what, sample.expected, sample.engine]),
      ),
    );
  }
  sections.push(
    `<h2>Load</h2>${table(
      ['', ''],
      [
        ['events by kind', EVENT_KINDS.map((kind) => `${kind} ${formatCount(load.generator.byKind[kind])}`).join(', ')],
        ['mean payload', `${formatCount(load.meanPayloadBytes)} B`],
        ['members touched / hottest share', `${formatCount(load.distinctMembers)} / ${(load.hottestMemberShare * 100).toFixed(2)} %`],
        ['generator', `${formatCount(load.generatorEventsPerSecond)} events/s in ${load.chunks} chunks (before any clock)`],
        [
          'generator fallbacks',
          `${load.generator.redemptionsUnfunded} unfunded redemptions, ${load.generator.activitiesCapped} capped activities, ${load.generator.returnsReplacedByPurchases} returns turned into purchases`,
        ],
      ],
    )}`,
  );
  if (result.notes.length > 0) sections.push(`<h2>Notes</h2><ul>${result.notes.map((note) => `<li>${escapeHtml(note)}</li>`).join('')}</ul>`);
  sections.push(`<h2>Parameters</h2><pre>${escapeHtml(JSON.stringify(parameters, null, 2))}</pre>`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Loyalty bench ${escapeHtml(result.startedAt)} ${result.verdict}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:8px 0}td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6}.passed{color:#1a7f37}.failed{color:#cf222e}.failures li{color:#cf222e}
.badge{display:inline-block;padding:1px 8px;border-radius:4px;font-weight:700;color:#fff}.badge.passed{background:#1a7f37;color:#fff}.badge.failed{background:#cf222e;color:#fff}
h1 .badge{font-size:16px;vertical-align:middle}.verdict-note{color:#555;font-size:13px}
svg{margin:12px 0;background:#fff}svg .title{font-size:14px;font-weight:600}svg .axis{font-size:11px;fill:#555}
svg .label{font-size:12px;fill:#333}svg .legend{font-size:12px;fill:#333}svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#999}
pre{background:#f6f6f6;padding:8px;overflow:auto}
</style></head><body>
${sections.join('\n')}
</body></html>
`;
}

/** `marked(row)` lists the columns whose cell is a MET / NOT MET verdict, drawn as a badge. */
function table(headers: readonly string[], rows: readonly (readonly string[])[], marked: (row: readonly string[]) => readonly number[] = () => []): string {
  const head = headers.some((header) => header.length > 0) ? `<tr>${headers.map((header) => `<th>${escapeHtml(header)}</th>`).join('')}</tr>` : '';
  const cell = (row: readonly string[], text: string, column: number): string => {
    if (!marked(row).includes(column)) return `<td>${escapeHtml(text)}</td>`;
    return `<td><span class="badge ${text === 'MET' ? 'passed' : 'failed'}">${escapeHtml(text)}</span></td>`;
  };
  return `<table>${head}${rows.map((row) => `<tr>${row.map((text, column) => cell(row, text, column)).join('')}</tr>`).join('')}</table>`;
}

export function writeHtmlReport(result: BenchResult, runStamp: string, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${runStamp}.html`);
  writeFileSync(path, renderHtml(result));
  return path;
}
