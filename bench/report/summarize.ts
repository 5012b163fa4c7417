/**
 * `npx tsx bench/report/summarize.ts bench/results/<a>.json [<b>.json ...]`:
 * one Markdown table row per result file, the columns of README's Benchmarks
 * section, so the figures there are copied, not retyped.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { formatBytes, formatCount, formatMs } from './progress.js';
import type { BenchResult } from './result.js';

export const SUMMARY_HEADER = [
  '| run | scenario | events / members | engine capacity | fell behind at | p50 / p99 latency | private memory max | raw JetStream | PostgreSQL | engine ÷ raw / ÷ PG | other CPU | correctness |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
].join('\n');

export function summaryRow(result: BenchResult, name: string): string {
  const { parameters, engine, baseline, postgres, ratios, correctness } = result;
  const scenario =
    parameters.scenario === 'max'
      ? `max, ${parameters.encoding}`
      : `${parameters.scenario} ${formatCount(parameters.ratePerSecond ?? Number.NaN)}/s${parameters.scenario === 'steady' ? '' : ' peak'}, ${parameters.durationSeconds} s, ${parameters.encoding}`;
  const mix = (['purchase', 'return', 'redemption', 'activity'] as const).filter((kind) => parameters.mix[kind] > 0);
  const load = `${basename(parameters.programFile, '.yaml')}${mix.length === 4 ? ', full mix' : mix.length === 1 ? ', purchases only' : `, ${mix.join('+')}`}${parameters.zipfExponent === 1 ? '' : `, Zipf s=${parameters.zipfExponent}`}`;
  const cells = [
    name,
    `${scenario}; ${load}`,
    `${formatCount(parameters.events)} / ${formatCount(parameters.members)} (${formatCount(result.load.distinctMembers)} touched)`,
    engine === null ? '-' : engine.throughput.saturatedEventsPerSecond === null ? `not reached (best 5 s ${formatCount(engine.throughput.peak5sEventsPerSecond)}/s)` : `${formatCount(engine.throughput.saturatedEventsPerSecond)}/s`,
    engine?.throughput.fellBehindAtOfferedPerSecond == null || engine.shape === null ? '-' : `${formatCount(engine.throughput.fellBehindAtOfferedPerSecond)}/s`,
    engine === null ? '-' : `${formatMs(engine.latencyMs.percentiles.p50 ?? Number.NaN)} / ${formatMs(engine.latencyMs.percentiles.p99 ?? Number.NaN)}`,
    engine === null ? '-' : formatBytes(engine.usage.engine.rssAnonBytesMax),
    baseline === null ? '-' : `${formatCount(baseline.consume.ratePerSecond)}/s`,
    postgres?.status === 'measured' ? `${formatCount(postgres.eventsPerSecond)}/s` : (postgres?.status ?? '-'),
    `${ratios.engineToRawConsume === null ? '-' : `${(ratios.engineToRawConsume * 100).toFixed(1)} %`} / ${ratios.engineToPostgres === null ? '-' : `${ratios.engineToPostgres.toFixed(2)} ×`}`,
    engine?.usage.otherProcessesCpuPercentMean == null ? '-' : `${engine.usage.otherProcessesCpuPercentMean.toFixed(0)} %`,
    correctness.checked ? (correctness.passed ? 'PASSED' : 'FAILED') : 'not checked',
  ];
  return `| ${cells.join(' | ')} |`;
}

function main(files: readonly string[]): void {
  if (files.length === 0) {
    process.stderr.write('usage: npx tsx bench/report/summarize.ts bench/results/<run>.json ...\n');
    process.exit(2);
  }
  const lines = [SUMMARY_HEADER];
  for (const file of files) lines.push(summaryRow(JSON.parse(readFileSync(file, 'utf8')) as BenchResult, basename(file, '.json')));
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(basename(process.argv[1]))) main(process.argv.slice(2));
