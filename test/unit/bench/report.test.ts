import { describe, expect, it } from 'vitest';
import { skippedPostgres } from '../../../bench/baselines/postgres-ledger.js';
import { skippedCorrectness } from '../../../bench/correctness/replay.js';
import { renderHtml } from '../../../bench/report/html.js';
import type { BenchResult } from '../../../bench/report/result.js';
import { lineChart, niceTicks } from '../../../bench/report/svg.js';
import { renderTable } from '../../../bench/report/table.js';
import { judgeTargets } from '../../../bench/report/targets.js';
import type { EngineRunResult, TimelinePoint } from '../../../bench/scenarios/engine-run.js';

const usage = { samples: 3, cpuPercentMean: 150, cpuPercentMax: 190, cpuSecondsTotal: 4.5, rssBytesMax: 600e6, rssAnonBytesMax: 400e6, rssBytesLast: 500e6 };

function timeline(): TimelinePoint[] {
  return [1, 2, 3, 4].map((tS) => ({
    tS,
    published: tS * 10_000,
    publishedPerSecond: 10_000,
    targetPerSecond: 10_000,
    done: tS * 5_000,
    donePerSecond: 5_000,
    latencyMs: { p50: 10 * tS, p90: 20 * tS, p99: 40 * tS, p999: 80 * tS, count: 5_000 },
    streamPending: tS * 5_000,
    ackPending: 2_000,
    metricsPending: tS * 5_000,
    engineCpuPercent: 180,
    engineRssBytes: 600e6,
    engineRssAnonBytes: 400e6,
    engineHeapUsedBytes: 80e6,
    actorHeapUsedBytes: 300e6,
    cachedMembers: 20_000,
    natsCpuPercent: 20,
    deadLetters: 0,
    rejected: tS,
  }));
}

function result(): BenchResult {
  const engine = {
    scenario: 'steady',
    shape: 'steady 10,000 events/s for 4 s (40,000 events)',
    programFile: 'config/programs/retail.yaml',
    engineStartMs: 2_000,
    engineEnv: { LOYALTY_SWEEP_INTERVAL_MS: '86400000' },
    warmup: null,
    publish: { published: 40_000, durationMs: 4_000, ratePerSecond: 10_000, shape: 'steady', flushes: 40, stoppedEarly: false, behindScheduleEventsMax: 0, behindScheduleMsMax: 0, startedAtMs: 0 },
    stream: { stream: 'LOYALTY_TX', expected: 40_000, stored: 40_000, lost: 0, settleMs: 5, lastStoredAtMs: 0 },
    outcomes: { messages: 80_000, eventsDone: 40_000, duplicateOutcomes: 0, foreign: 0, unparsable: 0, balanceOtherCurrency: 0, byKind: { balance: 39_000, rejected: 4 }, rejectionCodes: { INSUFFICIENT_POINTS: 4 }, rejectionSamples: [] },
    complete: true,
    ended: 'all-done',
    engineAckedMessages: 40_000,
    deadLetters: { stream: 0, metric: 0 },
    throughput: { eventsDone: 40_000, durationMs: 8_000, eventsPerSecond: 5_000, steadyEventsPerSecond: 5_000, peak5sEventsPerSecond: 5_000, saturatedEventsPerSecond: 5_000, saturatedSeconds: 4, fellBehindAtOfferedPerSecond: 10_000, fellBehindAtSecond: 1 },
    latencyMs: { count: 40_000, min: 1, mean: 50, max: 400, percentiles: { p50: 25, p90: 50, p99: 120, 'p99.9': 300 } },
    latencyFromScheduleMs: { count: 40_000, min: 1, mean: 60, max: 500, percentiles: { p50: 30, p90: 60, p99: 150, 'p99.9': 400 } },
    lag: { streamPendingMax: 20_000, ackPendingMax: 2_000, metricsPendingMax: 20_000 },
    usage: { engine: usage, engineCpuMicrosPerEvent: 240, engineThreads: [{ role: 'main', seconds: 1, systemSeconds: 0.1 }, { role: 'thread +9', seconds: 4, systemSeconds: 0.2 }], engineHeapUsedBytesMax: 80e6, actorHeapUsedBytesMax: 300e6, cachedMembersMax: 20_000, batchEventsMean: 812.5, natsServer: usage, benchClient: { cpuSeconds: 1, cpuPercentMean: 10 }, otherProcessesCpuPercentMean: 1 },
    metrics: { maxima: {}, last: {}, errors: [] },
    shutdown: { code: 0, signal: null, stopMs: 100, killed: false, dataDirBytes: 1e6 },
    engineLogFile: null,
    timeline: timeline(),
  } satisfies EngineRunResult;
  const value: BenchResult = {
    schemaVersion: 2,
    startedAt: '2026-11-23T10:00:00.000Z',
    finishedAt: '2026-11-23T10:01:00.000Z',
    verdict: 'PASSED',
    failures: [],
    notes: ['a note with <html> in it'],
    environment: {
      hostname: 'h',
      platform: 'linux-x64',
      kernel: '6',
      cpuCount: 2,
      cpuModel: 'AMD EPYC',
      memoryBytes: 24e9,
      loadAverageAtStart: [0, 0, 0],
      cpuBusyPercentAtStart: 1,
      node: 'v20',
      natsServer: 'nats-server: v2.9.10',
      gitCommit: 'abc',
      gitDirty: false,
    },
    parameters: {
      scenario: 'steady',
      shape: engine.shape,
      events: 40_000,
      ratePerSecond: 10_000,
      durationSeconds: 4,
      warmupEvents: 0,
      members: 100_000,
      zipfExponent: 1,
      encoding: 'msgpack',
      mix: { purchase: 90, return: 5, redemption: 3, activity: 2 },
      seed: 1,
      runId: 'r1',
      programFile: 'config/programs/retail.yaml',
      verify: 'on',
      baseline: 'on',
      baselineRepeats: 1,
      postgres: 'auto',
      postgresBatchEvents: 500,
      engineEnv: {},
      chunkEvents: 65_536,
      timeoutSeconds: 180,
      stallSeconds: 30,
      waitQuietSeconds: 0,
    },
    load: {
      generateMs: 100,
      generatorEventsPerSecond: 100_000,
      meanPayloadBytes: 300,
      payloadBytesTotal: 12e6,
      distinctMembers: 20_000,
      hottestMemberShare: 0.08,
      generator: { byKind: { purchase: 36_000, return: 2_000, redemption: 1_200, activity: 800 }, returnsReplacedByPurchases: 0, redemptionsUnfunded: 3, activitiesCapped: 0 },
      chunks: 1,
    },
    baseline: null,
    postgres: { ...skippedPostgres('PostgreSQL is not installed'), status: 'skipped' },
    engine,
    engineError: null,
    ratios: { engineToRawConsume: 0.1, engineToContractCeiling: 0.1, engineToPostgres: null, capacityBasis: 'backlog', capacityEventsPerSecond: 5_000 },
    targets: [],
    correctness: skippedCorrectness('--verify off'),
  };
  value.targets = judgeTargets(value);
  return value;
}

describe('HTML report', () => {
  it('is self-contained: inline SVG only, nothing fetched, text escaped', () => {
    const html = renderHtml(result());
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).not.toMatch(/<script|<link|src=|href=|@import|url\(/i);
    expect(html).toContain('a note with &lt;html&gt; in it');
    expect((html.match(/<svg /g) ?? []).length).toBeGreaterThanOrEqual(7);
    expect((html.match(/<svg /g) ?? []).length).toBe((html.match(/<\/svg>/g) ?? []).length);
    for (const title of ['Throughput', 'Latency', 'Consumer lag', 'CPU', 'Engine memory', 'Dead letters']) expect(html).toContain(title);
  });

  it('draws a line per series with a gap where a value is missing', () => {
    const svg = lineChart({
      title: 't',
      xLabel: 'x',
      yLabel: 'y',
      series: [{ name: 'a', color: '#000', points: [[0, 1], [1, 2], [2, null], [3, 4]] }],
    });
    const path = /<path d="([^"]+)"/.exec(svg)![1]!;
    expect(path.match(/M/g)).toHaveLength(2);
    expect(path.match(/L/g)).toHaveLength(1);
    expect(niceTicks(0, 57_500)).toEqual([0, 20_000, 40_000, 60_000]);
    expect(niceTicks(3, 9.5)).toEqual([2, 4, 6, 8, 10]);
  });

  it('judges only the targets whose conditions the run meets', () => {
    const targets = result().targets;
    const byName = (text: string) => targets.find((target) => target.target.includes(text))!;
    expect(byName('20,000 events/s').met).toBe(false);
    expect(byName('simple.yaml').met).toBeNull(); // a retail run
    expect(byName('50 ms').met).toBe(false); // steady 10,000/s with p99 120 ms
    expect(byName('15 ms').met).toBeNull(); // not a steady 100/s run
    expect(byName('10,000,000 members').met).toBeNull();
    expect(byName('contract transport ceiling').met).toBe(false); // 10 %
    expect(byName('PostgreSQL').met).toBeNull(); // no PostgreSQL figure
    expect(byName('µs of CPU').measured).toBe('240.0 µs');
  });

  it('shows NOT MET as plainly as PASSED, and says that PASSED is correctness', () => {
    const value = result();
    const html = renderHtml(value);
    const notMet = value.targets.filter((target) => target.met === false).length;
    const judged = value.targets.filter((target) => target.met !== null).length;
    expect(notMet).toBeGreaterThan(0);
    expect(html).toContain(`<span class="badge passed">correct: PASSED</span> <span class="badge failed">targets: ${notMet} of ${judged} NOT MET</span>`);
    expect((html.match(/<span class="badge failed">NOT MET<\/span>/g) ?? []).length).toBe(notMet);
    expect(html).toContain('PASSED means correct');
    const text = renderTable(value, null, null);
    expect(text.split('\n')[0]).toContain(`correct: PASSED  ·  targets: ${notMet} of ${judged} NOT MET`);
    expect(text).toContain('It says nothing about speed');
  });

  it('tells the latency percentiles apart by dash and width as well as colour', () => {
    const html = renderHtml(result());
    const latency = html.slice(html.indexOf('aria-label="Latency publish'), html.indexOf('</svg>', html.indexOf('aria-label="Latency publish')));
    const styles = [...latency.matchAll(/<path d="[^"]+" fill="none" stroke="([^"]+)" stroke-width="([^"]+)"(?: stroke-dasharray="([^"]+)")?/g)].map((match) => `${match[2]}|${match[3] ?? ''}`);
    expect(styles.length).toBe(4);
    expect(new Set(styles).size).toBe(4);
  });

  it('keeps every legend entry inside the chart, wrapping to more rows', () => {
    const names = ['private (RssAnon)', 'resident (VmRSS, with mapped LMDB pages)', 'main-thread V8 heap used', "actor threads' V8 heap used", 'one more long series name here'];
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: names.map((name, index) => ({ name, color: '#000', points: [[0, index], [1, index + 1]] })) });
    const width = Number(/viewBox="0 0 (\d+) (\d+)"/.exec(svg)![1]);
    const height = Number(/viewBox="0 0 (\d+) (\d+)"/.exec(svg)![2]);
    const entries = [...svg.matchAll(/<text x="([\d.]+)" y="([\d.]+)" class="legend">([^<]+)<\/text>/g)];
    expect(entries).toHaveLength(names.length);
    for (const [, x, y, name] of entries) {
      expect(Number(x) + name!.length * 7).toBeLessThanOrEqual(width);
      expect(Number(y)).toBeLessThanOrEqual(height);
    }
    expect(new Set(entries.map((entry) => entry[2])).size).toBeGreaterThan(1); // more than one row
  });

  it('draws a series marked axis right against its own scale and labels that axis', () => {
    const svg = lineChart({
      title: 't',
      xLabel: 'x',
      yLabel: 'events/s',
      y2Label: 'CPU, % of one core',
      series: [
        { name: 'rate', color: '#000', points: [[0, 0], [1, 30_000]] },
        { name: 'cpu', color: '#111', axis: 'right', points: [[0, 0], [1, 90]] },
      ],
    });
    expect(svg).toContain('CPU, % of one core');
    expect(svg).toContain('cpu (right axis)');
    const paths = [...svg.matchAll(/<path d="M([\d.]+) ([\d.]+)L([\d.]+) ([\d.]+)"/g)];
    // Both reach the top of the plot: each is scaled to its own axis (90 % would be a flat line at 0 on the events axis).
    expect(Number(paths[1]![4])).toBeLessThan(Number(paths[1]![2]) - 100);
    expect(Math.abs(Number(paths[0]![4]) - Number(paths[1]![4]))).toBeLessThan(40);
  });

  it('prints a table with every section', () => {
    const text = renderTable(result(), '/tmp/r.json', '/tmp/r.html');
    expect(text).toContain('Engine capacity');
    expect(text).toContain('PostgreSQL ledger');
    expect(text).toMatch(/Actor batch mean +812\.5 events/);
    expect(text).toContain('HTML report: /tmp/r.html');
  });
});
