import { performance } from 'node:perf_hooks';

/**
 * Samples a Prometheus /metrics endpoint over time. The engine's metric names
 * are still settling, so nothing here depends on one name existing: every
 * wanted family found is recorded (summed over its labels), missing ones are
 * simply absent from a sample.
 */

export const DEFAULT_WATCHED_METRICS = [
  'loyalty_consumer_pending_messages',
  'process_resident_memory_bytes',
  'nodejs_heap_size_used_bytes',
  'nodejs_eventloop_lag_p99_seconds',
  'loyalty_dead_letters_total',
  'loyalty_ack_pending_messages',
  'loyalty_events_total',
  'loyalty_actor_heap_used_bytes',
  'loyalty_actor_cached_members',
  // The batches' mean size (sum ÷ count): under backlog they should fill to LOYALTY_BATCH_SIZE_MAX.
  'loyalty_batch_size_events_sum',
  'loyalty_batch_size_events_count',
] as const;

export interface MetricsSample {
  tMs: number;
  values: Record<string, number>;
}

/**
 * Parses Prometheus text exposition and sums samples per metric name (labels
 * dropped). Only `wanted` names are kept when given.
 */
export function parsePrometheusText(text: string, wanted?: ReadonlySet<string>): Record<string, number> {
  const result: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */) continue;
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd <= 0) continue;
    const name = line.slice(0, nameEnd);
    if (wanted !== undefined && !wanted.has(name)) continue;
    // The value follows the labels (which may contain spaces inside quotes): take the text after the last '}' if any.
    const afterLabels = line.charCodeAt(nameEnd) === 123 /* { */ ? line.slice(line.lastIndexOf('}') + 1) : line.slice(nameEnd);
    const value = Number(afterLabels.trim().split(/\s+/)[0]);
    if (!Number.isFinite(value)) continue;
    result[name] = (result[name] ?? 0) + value;
  }
  return result;
}

export class MetricsScraper {
  readonly url: string;
  readonly samples: MetricsSample[] = [];
  readonly errors: string[] = [];
  private readonly wanted: ReadonlySet<string>;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private inFlight = false;

  constructor(url: string, wanted: readonly string[] = DEFAULT_WATCHED_METRICS) {
    this.url = url;
    this.wanted = new Set(wanted);
  }

  start(intervalMs = 1_000): void {
    this.startedAt = performance.now();
    this.timer = setInterval(() => void this.scrape(), intervalMs);
    this.timer.unref();
  }

  async scrape(): Promise<MetricsSample | undefined> {
    if (this.inFlight) return undefined;
    this.inFlight = true;
    try {
      const response = await fetch(this.url, { signal: AbortSignal.timeout(2_000) });
      if (!response.ok) {
        this.noteError(`HTTP ${response.status}`);
        return undefined;
      }
      const values = parsePrometheusText(await response.text(), this.wanted);
      const sample = { tMs: Math.round(performance.now() - this.startedAt), values };
      this.samples.push(sample);
      return sample;
    } catch (error) {
      this.noteError((error as Error).message);
      return undefined;
    } finally {
      this.inFlight = false;
    }
  }

  latest(): MetricsSample | undefined {
    return this.samples[this.samples.length - 1];
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Highest value seen per metric name. */
  maxima(): Record<string, number> {
    const result: Record<string, number> = {};
    for (const sample of this.samples) {
      for (const [name, value] of Object.entries(sample.values)) result[name] = Math.max(result[name] ?? -Infinity, value);
    }
    return result;
  }

  private noteError(message: string): void {
    // Keep a few distinct errors for the report, not one per second.
    if (this.errors.length < 10 && !this.errors.includes(message)) this.errors.push(message);
  }
}
