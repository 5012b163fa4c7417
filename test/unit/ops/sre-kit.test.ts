import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadSettings } from '../../../src/config/settings.js';
import { EngineMetrics } from '../../../src/metrics/metrics.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const read = (path: string) => readFileSync(root + path, 'utf8');

/** Every sample name /metrics can serve: the main thread's registry, then the API thread's metrics (read from its source). */
async function exportedNames(): Promise<Set<string>> {
  const names = new Set<string>();
  const metrics = await new EngineMetrics().registry.getMetricsAsJSON();
  for (const metric of metrics) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
    if (String(metric.type) === 'summary') for (const suffix of ['_sum', '_count']) names.add(metric.name + suffix);
  }
  const worker = read('src/api/worker.ts');
  const workerMetrics = [...worker.matchAll(/new (Counter|Gauge|Histogram)\(\{\s*name: '([a-z_:]+)'/g)];
  expect(workerMetrics.length).toBeGreaterThanOrEqual(6);
  for (const [, type, name] of workerMetrics) {
    names.add(name!);
    if (type === 'Histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name! + suffix);
  }
  // Prometheus's own per-target series.
  names.add('up');
  return names;
}

const functions = new Set([
  'rate', 'irate', 'increase', 'deriv', 'delta', 'idelta', 'changes', 'resets', 'histogram_quantile', 'sum', 'min', 'max', 'avg',
  'count', 'topk', 'bottomk', 'quantile', 'stddev', 'abs', 'clamp_min', 'clamp_max', 'time', 'vector', 'scalar', 'absent',
  'avg_over_time', 'max_over_time', 'min_over_time', 'predict_linear', 'by', 'without', 'on', 'ignoring', 'group_left',
  'group_right', 'and', 'or', 'unless', 'offset', 'bool',
]);

/** The metric names a PromQL expression selects. */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"[^"]*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
    .replace(/\boffset\s+\w+/g, '');
  const names = stripped.match(/[A-Za-z_:][A-Za-z0-9_:]*/g) ?? [];
  return names.filter((name) => !functions.has(name));
}

describe('metricNames', () => {
  it('finds selectors, not functions, labels or durations', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le, actor) (rate(a_bucket{x="y z"}[5m]))) > 2 * b offset 1h')).toEqual([
      'a_bucket',
      'b',
    ]);
    expect(metricNames('rate(loyalty_acks_total[$__rate_interval]) == 0 and c > 0')).toEqual(['loyalty_acks_total', 'c']);
  });
});

describe('Prometheus alert rules', () => {
  const rules = parse(read('config/prometheus/rules.yml')) as {
    groups: { name: string; rules: { alert: string; expr: string; for?: string; labels?: Record<string, string> }[] }[];
  };
  const all = rules.groups.flatMap((group) => group.rules);

  it('has named alerts with an expression and a severity', () => {
    expect(all.length).toBeGreaterThanOrEqual(10);
    const alerts = new Set<string>();
    for (const rule of all) {
      expect(rule.alert).toMatch(/^[A-Za-z][A-Za-z0-9]*$/);
      expect(alerts.has(rule.alert), rule.alert).toBe(false);
      alerts.add(rule.alert);
      expect(typeof rule.expr).toBe('string');
      expect(['critical', 'warning']).toContain(rule.labels?.severity);
      if (rule.for !== undefined) expect(rule.for).toMatch(/^\d+[smhd]$/);
    }
  });

  it('names only metrics the engine exports', async () => {
    const exported = await exportedNames();
    for (const rule of all) {
      const names = metricNames(rule.expr);
      expect(names.length, rule.alert).toBeGreaterThan(0);
      for (const name of names) expect(exported.has(name), `${rule.alert}: ${name}`).toBe(true);
    }
  });

  it('assumes the settings\' defaults it says it assumes (the cache-thrash threshold is LOYALTY_MEMBER_CACHE_MAX)', () => {
    const rules = read('config/prometheus/rules.yml');
    const defaults = loadSettings({});
    expect(Number(/LOYALTY_MEMBER_CACHE_MAX (\d+)/.exec(rules)![1])).toBe(defaults.memberCacheMax);
    expect(Number(/LOYALTY_ACK_PENDING_MAX\s+#?\s*(\d+)/.exec(rules)![1])).toBe(defaults.ackPendingMax);
    expect(Number(/LOYALTY_ACTOR_BATCHES_IN_FLIGHT_MAX (\d+)/.exec(rules)![1])).toBe(defaults.actorBatchesInFlightMax);
    const thrash = all.find((rule) => rule.alert === 'LoyaltyCacheThrash')!;
    expect(Number(/loyalty_actor_cached_members\) >= (\d+)/.exec(thrash.expr)![1])).toBe(defaults.memberCacheMax);
    const ackPending = all.find((rule) => /loyalty_ack_pending_messages > 0\.9 \*/.test(rule.expr))!;
    expect(Number(/0\.9 \* (\d+)/.exec(ackPending.expr)![1])).toBe(defaults.ackPendingMax);
  });

  it('covers every metric docs/operations.md says to alert on', () => {
    const operations = read('docs/operations.md');
    const section = operations.slice(operations.indexOf('## What to alert on'));
    const documented = new Set([...section.matchAll(/`[^`]*?\b((?:loyalty|nodejs)_[a-z_]+)/g)].map((match) => match[1]!));
    const used = new Set(all.flatMap((rule) => metricNames(rule.expr)).map((name) => name.replace(/_bucket$/, '')));
    for (const name of documented) expect(used.has(name), name).toBe(true);
  });

  it('passes promtool check rules when promtool is installed', () => {
    const result = spawnSync('promtool', ['check', 'rules', root + 'config/prometheus/rules.yml'], { encoding: 'utf8' });
    if (result.error !== undefined) return; // not installed
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });
});

describe('Grafana dashboard', () => {
  const dashboard = JSON.parse(read('config/grafana/dashboards/loyalty-engine.json')) as {
    uid: string;
    panels: { type: string; title: string; datasource?: { uid: string }; targets?: { expr: string }[] }[];
  };
  const datasources = parse(read('config/grafana/provisioning/datasources/prometheus.yaml')) as {
    datasources: { uid: string; type: string }[];
  };

  it('queries only metrics the engine exports, through the provisioned datasource', async () => {
    const exported = await exportedNames();
    const uids = new Set(datasources.datasources.map((source) => source.uid));
    const graphs = dashboard.panels.filter((panel) => panel.type !== 'row');
    expect(graphs.length).toBeGreaterThanOrEqual(10);
    for (const panel of graphs) {
      expect(uids.has(panel.datasource!.uid), panel.title).toBe(true);
      expect(panel.targets!.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets!) {
        const names = metricNames(target.expr.replaceAll('$__rate_interval', '5m'));
        expect(names.length, panel.title).toBeGreaterThan(0);
        for (const name of names) expect(exported.has(name), `${panel.title}: ${name}`).toBe(true);
      }
    }
  });

  it('shows throughput, latency, lag, dead letters, actor heaps and caches, and HTTP', () => {
    const queried = new Set(dashboard.panels.flatMap((panel) => panel.targets ?? []).flatMap((target) => metricNames(target.expr)));
    for (const name of [
      'loyalty_events_total',
      'loyalty_event_commit_latency_seconds_bucket',
      'loyalty_consumer_pending_messages',
      'loyalty_dead_letters_total',
      'loyalty_actor_heap_used_bytes',
      'loyalty_actor_cached_members',
      'loyalty_http_thread_busy_seconds_total',
      'loyalty_http_wallet_reads_total',
    ]) {
      expect(queried.has(name), name).toBe(true);
    }
  });
});
