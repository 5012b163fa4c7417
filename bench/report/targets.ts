import { basename } from 'node:path';
import { formatBytes, formatCount, formatMs } from './progress.js';
import type { BenchResult, TargetCheck } from './result.js';

/**
 * The issue's targets on this 2-core machine, judged on one run when its
 * conditions apply (met: null when they do not). Throughput targets use the
 * engine's capacity figure (its committed rate while it had a backlog): a run
 * in which the engine kept up with the offered load does not measure it.
 */
export function judgeTargets(result: BenchResult): TargetCheck[] {
  const { parameters, engine, baseline, postgres, ratios } = result;
  const retail = basename(parameters.programFile) === 'retail.yaml';
  const fullMix = parameters.mix.return > 0 && parameters.mix.redemption > 0 && parameters.mix.activity > 0;
  const capacity = engine?.throughput.saturatedEventsPerSecond ?? null;
  const capacityText = capacity === null ? null : `${formatCount(capacity)} events/s`;
  const targets: TargetCheck[] = [];
  const throughputTarget = (encoding: 'msgpack' | 'json', minimum: number): TargetCheck => {
    const applies = engine !== null && retail && parameters.encoding === encoding && capacity !== null;
    return {
      target: `≥ ${formatCount(minimum)} events/s sustained end-to-end, retail program's full rules, ${encoding}`,
      measured: engine !== null && parameters.encoding === encoding ? capacityText : null,
      met: applies ? capacity! >= minimum : null,
      conditions: !retail
        ? 'not the retail program'
        : parameters.encoding !== encoding
          ? `run with ${parameters.encoding}`
          : capacity === null
            ? 'the engine never had a backlog: its capacity was not reached'
            : `capacity while the engine had a backlog${fullMix ? ', full event mix' : ', purchases-only or partial mix'}`,
    };
  };
  targets.push(throughputTarget('msgpack', 100_000));
  targets.push(throughputTarget('json', 60_000));
  const steady50k = parameters.scenario === 'steady' && (parameters.ratePerSecond ?? 0) >= 50_000;
  const p99 = engine?.latencyMs.percentiles.p99;
  targets.push({
    target: 'p99 publish → outcome ≤ 25 ms at 50,000 events/s',
    measured: engine !== null && p99 !== undefined ? `p99 ${formatMs(p99)} at ${parameters.scenario === 'steady' ? `${formatCount(parameters.ratePerSecond ?? 0)}/s steady` : parameters.scenario}` : null,
    met: steady50k && p99 !== undefined ? p99 <= 25 : null,
    conditions: steady50k ? 'steady 50,000 events/s' : 'judged only with --scenario steady --rate 50000 (or more)',
  });
  targets.push({
    target: '≥ 3 × the batched PostgreSQL ledger baseline',
    measured: ratios.engineToPostgres === null ? null : `${ratios.engineToPostgres.toFixed(2)} × (${formatCount(ratios.capacityEventsPerSecond ?? Number.NaN)} vs ${formatCount(postgres?.eventsPerSecond ?? Number.NaN)} events/s)`,
    met: ratios.engineToPostgres === null || capacity === null ? null : ratios.engineToPostgres >= 3,
    conditions: capacity === null ? 'needs the engine at capacity (a backlog) and the PostgreSQL baseline' : `${postgres?.batchEvents ?? '-'} events per PostgreSQL transaction`,
  });
  targets.push({
    target: '≥ 60 % of the raw JetStream consume rate',
    measured:
      ratios.engineToRawConsume === null ? null : `${(ratios.engineToRawConsume * 100).toFixed(1)} % (of ${formatCount(baseline?.consume.ratePerSecond ?? Number.NaN)} msg/s)`,
    met: ratios.engineToRawConsume === null || capacity === null ? null : ratios.engineToRawConsume >= 0.6,
    conditions: capacity === null ? 'needs the engine at capacity (a backlog)' : 'same events, same machine, same run',
  });
  const tenMillion = parameters.members >= 10_000_000;
  const privateMax = engine?.usage.engine.rssAnonBytesMax;
  targets.push({
    target: 'private memory (RssAnon) ≤ 1 GiB at 10,000,000 members',
    measured: privateMax === undefined ? null : `${formatBytes(privateMax)} at ${formatCount(parameters.members)} members (${formatCount(result.load.distinctMembers)} touched)`,
    met: tenMillion && privateMax !== undefined ? privateMax <= 1024 ** 3 : null,
    conditions: tenMillion ? '--members 10m' : 'judged only with --members 10m or more',
  });
  targets.push({
    target: 'throughput within 20 % from 100,000 to 10,000,000 members',
    measured: null,
    met: null,
    conditions: 'compare runs with --members 100k and --members 10m (README, Benchmarks)',
  });
  return targets;
}
