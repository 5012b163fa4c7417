import type { KV } from '@nats-io/kv';
import { createInbox, headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { ServiceErrorCodeHeader, ServiceErrorHeader } from '@nats-io/services';
import type { ReportPeriod, ReportRow } from '../api/context.js';
import { assert } from '../domain/assert.js';
import { DAY_MS, dayKeyOf, emptyDay, mergeDay, monthKeyOf, PROGRAM_COUNTERS, weekKeyOf, type DayCounters } from '../reports/kpis.js';
import { buildProgramReport, buildReport, type ProgramReportRow, type ReportProgramInfo, type ReportSource } from '../reports/report.js';
import { HEADER_ERROR_CODE } from '../transport/services.js';
import { HEADER_INSTANCE } from './wallet-routing.js';

/**
 * KPI reports aggregated across instances (issue 17). KPI counters are kept
 * per actor on the instance whose actor applied the event (src/store/lmdb.ts,
 * ['d', dayKey, actor]), and partitions move between instances, so one day's
 * counters of one program are spread over every instance that owned one of
 * its partitions that day, and stay there after the partition moved on. A
 * report asks all of them at once:
 *
 *   <prefix>.svc.kpis.scatter   {"fromDay": 20089, "toDay": 20454}
 *     → from every instance (a plain subscription each, no queue group):
 *       its own counters of those days, the days before them merged into one,
 *       and the week and month active members of the periods they touch,
 *       in chunks of at most chunkBytes
 *
 * and sums them (mergeDay). Not `<prefix>.svc.kpis`: that name is left for
 * the report itself (one answer, a queue group, like <prefix>.svc.wallet),
 * which an instance would answer by running this aggregation.
 *
 * Why the sum is exact. Every counter is a count of events (or a difference
 * of a member's lifetime counters before and after one event) added by the
 * one instance that committed that event: the changelog's fencing lets one
 * owner commit each event. The week and month active members, and the
 * purchasers of a day, week and month, are counted that way too: "the
 * member's first activity in this period", decided from the member's own
 * state (lastActivityMs, engagement.lastOrderMs) before and after the event.
 * That state moves with the partition (src/store/partition-transfer.ts), so a
 * member active on Monday at instance A whose partition moved to B by
 * Wednesday is not counted again at B: B sees Monday's activity in the state.
 * Summing the per-instance counts of a period therefore counts each member
 * once, like the per-actor sum of one instance does today; no distinct-count
 * sketch is needed. (A HyperLogLog of the member ids would be mergeable but
 * approximate, ±1.04/√m, e.g. 0.8 % at 16 KiB per period and per instance,
 * and it would add a hash and a register write per event: worse than exact.)
 * What the sum relies on, and what would break it:
 * - each event's KPI deltas committed once, on one instance. The new owner
 *   rebuilding a partition from a snapshot and the changelog tail must not
 *   add KPI deltas for events the old owner already counted, and an event
 *   the old owner appended to the changelog but did not commit to its LMDB
 *   (crashed between the two) is counted by neither unless the changelog
 *   carries its KPI deltas: for the changelog wiring to settle (not built).
 * - the member's state moving with its partition. A partition restored from
 *   a state older than the member's last activity would count the member
 *   again in that week and month: an over-count of at most one per member,
 *   period and such restore. Snapshot + changelog tail is not older.
 * - every instance that ever counted answering. Counters outlive an
 *   instance's heartbeat: one that left for good (scaled down) still holds
 *   its days on its disk, and the live set no longer names it. Expect the
 *   set of KPI holders (registerKpiHolder, a bucket without TTL) rather than
 *   the live set; an answer from an instance not expected is merged anyway
 *   and named in `unexpected`.
 * Anything short of every expected instance answering is `complete: false`,
 * with the instances `missing` and `failed` named, so a report can say it
 * is partial instead of silently under-counting.
 *
 * The codes are the wire's, like the wallet router's (HTTP-like numbers);
 * errors are thrown as KpiAggregationError.
 */

export const KPI_AGGREGATION_CODES = {
  /** The request is not {"fromDay", "toDay"} with integer days, toDay ≥ fromDay. */
  VALIDATION_FAILED: 400,
  /** More days than rangeDaysMax in one request: ask for a shorter range. */
  RANGE_TOO_LARGE: 413,
  /** The instance's counters of the range encode to more than replyBytesMax. */
  REPLY_TOO_LARGE: 413,
  /** The instance's read of its counters failed. */
  INTERNAL_ERROR: 500,
  /** The instance has too many KPI reads in flight. */
  OVERLOADED: 503,
  /** Aggregator: an instance's reply was malformed, cut short, or over the bounds. */
  INVALID_REPLY: 502,
  /** Aggregator: the request could not be sent (connection closed or draining), or the expected set could not be read. */
  REQUEST_FAILED: 503,
} as const;

export type KpiAggregationCode = keyof typeof KPI_AGGREGATION_CODES;

export class KpiAggregationError extends Error {
  readonly status: number;
  constructor(
    readonly code: KpiAggregationCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KpiAggregationError';
    this.status = KPI_AGGREGATION_CODES[code];
  }
}

/** A chunk's place in an instance's reply: "<index>/<count>", 0-based. */
export const HEADER_KPI_CHUNK = 'Loyalty-Kpi-Chunk';
/** The byte length of the whole reply, on every chunk: the chunks put together must have it. */
export const HEADER_KPI_BYTES = 'Loyalty-Kpi-Bytes';

/** Two years and a leap day plus a margin: a year over year report fits; longer ones are asked for in parts. */
export const RANGE_DAYS_MAX = 1_100;
/**
 * Per instance: 1,100 days of a program with a few currencies, promotions
 * and badges are about 1-2 MB of JSON; 32 MiB leaves room for many more
 * promotions and badges per day and still bounds the aggregator's memory
 * (instances × this).
 */
export const REPLY_BYTES_MAX = 32 * 1024 * 1024;
/** Under nats-server's default max_payload (1 MiB), with the headers' room. */
export const CHUNK_BYTES_DEFAULT = 512 * 1024;
const CHUNK_BYTES_MIN = 1024;
/** Room for the headers in a message of max_payload bytes. */
const HEADER_ROOM_BYTES = 4 * 1024;
/** Replies from more distinct instances than this are not collected: no deployment has that many. */
export const INSTANCES_MAX = 1_024;
const REQUEST_BYTES_MAX = 1024;
/** Day keys of years 1700..2300 and more: far from the safe integers' ends, so range arithmetic stays exact. */
const DAY_KEY_ABS_MAX = 200_000;

export function kpiScatterSubject(prefix: string): string {
  return `${prefix}.svc.kpis.scatter`;
}

/** Inclusive day keys (days since the epoch at the program's UTC offset, as dayKeyOf). */
export interface KpiDayRange {
  readonly fromDay: number;
  readonly toDay: number;
}

/** The day keys of a report's [fromMs, toMs) at the program's offset: the range buildReport reads. */
export function dayRangeOf(fromMs: number, toMs: number, utcOffsetMinutes: number): KpiDayRange {
  assert(Number.isFinite(fromMs) && Number.isFinite(toMs) && toMs > fromMs, 'a report range is [fromMs, toMs) with toMs > fromMs');
  return { fromDay: dayKeyOf(fromMs, utcOffsetMinutes), toDay: dayKeyOf(toMs - 1, utcOffsetMinutes) };
}

/** The week and month keys a day belongs to: offset-free, as report.ts's periodKeyOfDay computes them. */
function weekOfDay(dayKey: number): number {
  return weekKeyOf(dayKey * DAY_MS, 0);
}
function monthOfDay(dayKey: number): number {
  return monthKeyOf(dayKey * DAY_MS, 0);
}

function rangeProblem(range: { fromDay?: unknown; toDay?: unknown }, rangeDaysMax: number): { code: KpiAggregationCode; message: string } | undefined {
  const { fromDay, toDay } = range;
  if (!Number.isInteger(fromDay) || !Number.isInteger(toDay) || Math.abs(fromDay as number) > DAY_KEY_ABS_MAX || Math.abs(toDay as number) > DAY_KEY_ABS_MAX) {
    return { code: 'VALIDATION_FAILED', message: `fromDay and toDay must be integer day keys within ±${DAY_KEY_ABS_MAX}` };
  }
  const days = (toDay as number) - (fromDay as number) + 1;
  if (days < 1) return { code: 'VALIDATION_FAILED', message: `toDay ${String(toDay)} is before fromDay ${String(fromDay)}` };
  if (days > rangeDaysMax) return { code: 'RANGE_TOO_LARGE', message: `${days} days requested, at most ${rangeDaysMax} in one request: ask for a shorter range` };
  return undefined;
}

/** What an instance sends: its own counters (merged over its actors). */
interface KpiReplyBody {
  readonly instanceId: string;
  readonly fromDay: number;
  readonly toDay: number;
  /** The days of the range that have counters, ascending. */
  readonly days: readonly (readonly [number, DayCounters])[];
  /** Every day before fromDay merged into one: the running totals (liability, tiers, members) start from it. */
  readonly before: DayCounters;
  /** Active members of the weeks (Monday's day key) and months (year × 12 + month) that overlap the range. */
  readonly weeks: readonly (readonly [number, number])[];
  readonly months: readonly (readonly [number, number])[];
  /**
   * Cluster mode, KPI counters kept per partition (they move with it): the
   * partitions whose counters this reply includes, the ones the instance
   * consumes now. The aggregator checks that every partition is in exactly
   * one reply (KpiAggregatorOptions.partitions).
   */
  readonly partitions?: readonly number[];
}

/** What a KpiReader gives: the counters, and in cluster mode the partitions they cover. */
export type KpiSource = ReportSource & { readonly partitions?: readonly number[] };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---- the instance's side ----

/**
 * The instance's own counters, merged across its actors: `store.reportSource()`
 * (src/store/lmdb.ts) is one. It may hold days outside the range: those
 * before it are merged into `before`, those after it left out.
 */
export type KpiReader = (range: KpiDayRange) => KpiSource | Promise<KpiSource>;

export interface KpiResponderOptions {
  readonly instanceId: string;
  /** settings.subjectPrefix; default "loyalty". */
  readonly subjectPrefix?: string;
  readonly read: KpiReader;
  /** Default RANGE_DAYS_MAX. */
  readonly rangeDaysMax?: number;
  /** Default REPLY_BYTES_MAX. */
  readonly replyBytesMax?: number;
  /** Default CHUNK_BYTES_DEFAULT, and never over the server's max_payload less room for the headers. */
  readonly chunkBytes?: number;
  /** Asynchronous reads in flight; beyond, OVERLOADED. A read walks every KPI record, so a few. Default 4. */
  readonly readsInFlightMax?: number;
  /** A failure the responder could not answer with (a reply that could not be sent). */
  readonly onError?: (error: unknown) => void;
}

export class KpiResponder {
  private subscription: Subscription | undefined;
  private stopping: Promise<void> | undefined;
  private readonly prefix: string;
  private readonly rangeDaysMax: number;
  private readonly replyBytesMax: number;
  private readonly chunkBytes: number;
  private readonly readsInFlightMax: number;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: KpiResponderOptions,
  ) {
    assert(/^[A-Za-z0-9_-]{1,64}$/.test(options.instanceId), 'an instance id is 1-64 of A-Z a-z 0-9 _ -');
    this.prefix = checkedPrefix(options.subjectPrefix);
    this.rangeDaysMax = options.rangeDaysMax ?? RANGE_DAYS_MAX;
    this.replyBytesMax = options.replyBytesMax ?? REPLY_BYTES_MAX;
    this.readsInFlightMax = options.readsInFlightMax ?? 4;
    assert(Number.isInteger(this.rangeDaysMax) && this.rangeDaysMax >= 1 && this.rangeDaysMax <= 2 * DAY_KEY_ABS_MAX, 'rangeDaysMax must be a positive integer');
    assert(Number.isInteger(this.replyBytesMax) && this.replyBytesMax >= CHUNK_BYTES_MIN, `replyBytesMax must be an integer of at least ${CHUNK_BYTES_MIN}`);
    assert(Number.isInteger(this.readsInFlightMax) && this.readsInFlightMax >= 1, 'readsInFlightMax must be a positive integer');
    const serverMax = nc.info?.max_payload ?? 1024 * 1024;
    this.chunkBytes = Math.min(options.chunkBytes ?? CHUNK_BYTES_DEFAULT, serverMax - HEADER_ROOM_BYTES);
    assert(Number.isInteger(this.chunkBytes) && this.chunkBytes >= CHUNK_BYTES_MIN, `chunkBytes must be an integer of at least ${CHUNK_BYTES_MIN} (and the server's max_payload above it)`);
  }

  /** Answer scatter requests from now on; resolves once the server has the subscription. */
  async start(): Promise<void> {
    assert(this.subscription === undefined, 'the KPI responder is already started');
    this.subscription = this.nc.subscribe(kpiScatterSubject(this.prefix), {
      callback: (error, message) => {
        if (error === null) this.onRequest(message);
        else this.options.onError?.(error);
      },
    });
    await this.nc.flush();
  }

  /** Stop answering: a drain, then the reads in flight. Idempotent. */
  stop(): Promise<void> {
    const subscription = this.subscription;
    if (subscription === undefined) return Promise.resolve();
    this.stopping ??= (async () => {
      try {
        await subscription.drain();
      } catch (error) {
        if (!this.nc.isClosed()) this.options.onError?.(error);
      }
      await Promise.allSettled([...this.inFlight]);
    })();
    return this.stopping;
  }

  private onRequest(message: Msg): void {
    if (message.reply === undefined || message.reply === '') return; // a publish: nobody to answer
    const range = this.rangeOf(message);
    if ('code' in range) {
      this.respondError(message, range.code, range.message);
      return;
    }
    let source: KpiSource | Promise<KpiSource>;
    try {
      source = this.options.read(range);
    } catch (failure) {
      this.respondError(message, 'INTERNAL_ERROR', errorText(failure));
      return;
    }
    if (!(source instanceof Promise)) {
      this.answer(message, range, source);
      return;
    }
    if (this.inFlight.size >= this.readsInFlightMax) {
      this.respondError(message, 'OVERLOADED', `instance ${this.options.instanceId} has ${this.inFlight.size} KPI reads in flight`);
      return;
    }
    const pending: Promise<void> = source
      .then(
        (read) => this.answer(message, range, read),
        (failure: unknown) => this.respondError(message, 'INTERNAL_ERROR', errorText(failure)),
      )
      .finally(() => this.inFlight.delete(pending));
    this.inFlight.add(pending);
  }

  private rangeOf(message: Msg): KpiDayRange | { code: KpiAggregationCode; message: string } {
    const malformed = { code: 'VALIDATION_FAILED' as const, message: 'request must be {"fromDay": <day key>, "toDay": <day key>}' };
    if (message.data.length > REQUEST_BYTES_MAX) return malformed;
    let body: unknown;
    try {
      body = JSON.parse(decoder.decode(message.data));
    } catch {
      return malformed;
    }
    if (typeof body !== 'object' || body === null) return malformed;
    const { fromDay, toDay } = body as { fromDay?: unknown; toDay?: unknown };
    const problem = rangeProblem({ fromDay, toDay }, this.rangeDaysMax);
    return problem ?? { fromDay: fromDay as number, toDay: toDay as number };
  }

  private answer(message: Msg, range: KpiDayRange, source: KpiSource): void {
    let bytes: Uint8Array;
    try {
      bytes = encoder.encode(JSON.stringify(replyBody(this.options.instanceId, range, source)));
    } catch (failure) {
      this.respondError(message, 'INTERNAL_ERROR', errorText(failure));
      return;
    }
    if (bytes.length > this.replyBytesMax) {
      this.respondError(message, 'REPLY_TOO_LARGE', `the counters of days ${range.fromDay}..${range.toDay} are ${bytes.length} bytes, over ${this.replyBytesMax}: ask for a shorter range`);
      return;
    }
    const count = Math.max(1, Math.ceil(bytes.length / this.chunkBytes));
    try {
      for (let index = 0; index < count; index++) {
        const headers = natsHeaders();
        headers.set(HEADER_INSTANCE, this.options.instanceId);
        headers.set(HEADER_KPI_CHUNK, `${index}/${count}`);
        headers.set(HEADER_KPI_BYTES, String(bytes.length));
        // A view, not a copy: the publish copies it into the connection's buffer.
        this.nc.publish(message.reply!, bytes.subarray(index * this.chunkBytes, Math.min(bytes.length, (index + 1) * this.chunkBytes)), { headers });
      }
    } catch (error) {
      this.options.onError?.(error); // the connection closed under us: the aggregator names us missing
    }
  }

  private respondError(message: Msg, code: KpiAggregationCode, text: string): void {
    const headers = natsHeaders();
    headers.set(ServiceErrorCodeHeader, String(KPI_AGGREGATION_CODES[code]));
    headers.set(ServiceErrorHeader, `${code}: ${text}`);
    headers.set(HEADER_ERROR_CODE, code);
    headers.set(HEADER_INSTANCE, this.options.instanceId);
    try {
      message.respond(encoder.encode(JSON.stringify({ error: { code, message: text } })), { headers });
    } catch (error) {
      this.options.onError?.(error);
    }
  }
}

/** The reply of one instance: its days of the range, the days before merged, the week and month active members touching the range. */
function replyBody(instanceId: string, range: KpiDayRange, source: KpiSource): KpiReplyBody {
  const { fromDay, toDay } = range;
  const days: [number, DayCounters][] = [];
  const before = emptyDay();
  for (const [dayKey, counters] of source.days) {
    if (dayKey < fromDay) mergeDay(before, counters);
    else if (dayKey <= toDay) days.push([dayKey, counters]);
  }
  days.sort((a, b) => a[0] - b[0]);
  const firstWeek = weekOfDay(fromDay);
  const firstMonth = monthOfDay(fromDay);
  const lastMonth = monthOfDay(toDay);
  const weeks = [...source.weeks].filter(([week]) => week >= firstWeek && week <= toDay).sort((a, b) => a[0] - b[0]);
  const months = [...source.months].filter(([month]) => month >= firstMonth && month <= lastMonth).sort((a, b) => a[0] - b[0]);
  return { instanceId, fromDay, toDay, days, before, weeks, months, ...(source.partitions === undefined ? {} : { partitions: [...source.partitions].sort((a, b) => a - b) }) };
}

// ---- the aggregator's side ----

/** The instances a report needs answers from: e.g. instancesInBucket(the KPI holders bucket), instancesInBucket(the heartbeat bucket: the live set, see above), or a fixed list. */
export type ExpectedInstances = () => Iterable<string> | Promise<Iterable<string>>;

export interface KpiAggregatorOptions {
  /** settings.subjectPrefix; default "loyalty". */
  readonly subjectPrefix?: string;
  readonly expected: ExpectedInstances;
  /** How long to wait for every expected instance; then the aggregate is returned with `complete: false`. Default 2,000 ms, at most 60 s. */
  readonly timeoutMs?: number;
  /** Refused before anything is sent: the responders' own bound should be the same. Default RANGE_DAYS_MAX. */
  readonly rangeDaysMax?: number;
  /** A reply over this from one instance is refused (INVALID_REPLY). Default REPLY_BYTES_MAX. */
  readonly replyBytesMax?: number;
  /**
   * Cluster mode with KPI counters per partition: the partition count. Each
   * reply names the partitions it covers, and the aggregate is complete only
   * if every partition is covered by exactly one reply (a partition between
   * owners is covered by none: `uncovered`; two instances that both count one,
   * which the fencing should prevent: `overlapping`).
   */
  readonly partitions?: number;
}

export interface KpiInstanceFailure {
  readonly instanceId: string;
  readonly code: KpiAggregationCode;
  readonly message: string;
}

export interface KpiAggregate extends KpiDayRange {
  /** The days of the range with counters, summed over the instances that answered. */
  readonly days: ReadonlyMap<number, DayCounters>;
  /** Every day before fromDay, summed: the start of the running totals. */
  readonly before: DayCounters;
  /** Active members per week (Monday's day key) and month (year × 12 + month) overlapping the range, summed. */
  readonly weeks: ReadonlyMap<number, number>;
  readonly months: ReadonlyMap<number, number>;
  /** The expected set, as read when the request was sent. */
  readonly expected: readonly string[];
  /** Instances whose counters are in the sums (expected or not), sorted. */
  readonly answered: readonly string[];
  /** Expected instances that did not answer in time (or whose reply was not whole by then), sorted. */
  readonly missing: readonly string[];
  /** Instances that answered with an error, or whose reply was refused: not in the sums. */
  readonly failed: readonly KpiInstanceFailure[];
  /** Answered without being expected: merged (they hold counters), but the expected set is out of date. */
  readonly unexpected: readonly string[];
  /** Every expected instance answered and none failed: the sums are the program's. */
  /** With the partitions option: partitions no reply covered, and partitions more than one did (both empty otherwise). */
  readonly uncovered: readonly number[];
  readonly overlapping: readonly number[];
  readonly complete: boolean;
  /** Bytes of each answering instance's reply (all chunks), by instance id. */
  readonly replyBytes: ReadonlyMap<string, number>;
  readonly elapsedMs: number;
}

/** Received so far of one instance's reply. */
interface Assembly {
  readonly count: number;
  readonly totalBytes: number;
  readonly chunks: (Uint8Array | undefined)[];
  received: number;
}

export class KpiAggregator {
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly rangeDaysMax: number;
  private readonly replyBytesMax: number;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: KpiAggregatorOptions,
  ) {
    this.prefix = checkedPrefix(options.subjectPrefix);
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.rangeDaysMax = options.rangeDaysMax ?? RANGE_DAYS_MAX;
    this.replyBytesMax = options.replyBytesMax ?? REPLY_BYTES_MAX;
    assert(Number.isInteger(this.timeoutMs) && this.timeoutMs >= 1 && this.timeoutMs <= 60_000, 'timeoutMs must be an integer from 1 to 60,000');
    assert(Number.isInteger(this.rangeDaysMax) && this.rangeDaysMax >= 1 && this.rangeDaysMax <= 2 * DAY_KEY_ABS_MAX, 'rangeDaysMax must be a positive integer');
    assert(Number.isInteger(this.replyBytesMax) && this.replyBytesMax >= CHUNK_BYTES_MIN, `replyBytesMax must be an integer of at least ${CHUNK_BYTES_MIN}`);
  }

  /**
   * Every instance's counters of the range, summed. Resolves when every
   * expected instance answered (or failed), or after timeoutMs with what
   * came; throws KpiAggregationError only for a range refused before
   * sending (VALIDATION_FAILED, RANGE_TOO_LARGE) or a request that could not
   * be sent (REQUEST_FAILED).
   */
  async aggregate(range: KpiDayRange): Promise<KpiAggregate> {
    const problem = rangeProblem(range, this.rangeDaysMax);
    if (problem !== undefined) throw new KpiAggregationError(problem.code, problem.message);
    const { fromDay, toDay } = range;
    let expected: string[];
    try {
      expected = [...new Set(await this.options.expected())].sort();
    } catch (error) {
      throw new KpiAggregationError('REQUEST_FAILED', `the expected instances could not be read: ${errorText(error)}`, { cause: error });
    }
    assert(expected.length <= INSTANCES_MAX, `at most ${INSTANCES_MAX} expected instances`);
    const expectedSet = new Set(expected);

    const days = new Map<number, DayCounters>();
    const before = emptyDay();
    const weeks = new Map<number, number>();
    const months = new Map<number, number>();
    const answered = new Set<string>();
    const failed = new Map<string, KpiInstanceFailure>();
    const replyBytes = new Map<string, number>();
    /** Partition → how many replies covered it (the partitions option). */
    const covered = new Map<number, number>();
    const assemblies = new Map<string, Assembly>();
    const startedAt = performance.now();

    const fail = (instanceId: string, code: KpiAggregationCode, message: string) => {
      assemblies.delete(instanceId);
      if (!answered.has(instanceId)) failed.set(instanceId, { instanceId, code, message });
    };
    const done = (instanceId: string) => answered.has(instanceId) || failed.has(instanceId);
    const settled = () => expected.length > 0 && expected.every(done);

    const merge = (instanceId: string, assembly: Assembly) => {
      assemblies.delete(instanceId);
      const bytes = concat(assembly.chunks as Uint8Array[], assembly.totalBytes);
      if (bytes === undefined) {
        fail(instanceId, 'INVALID_REPLY', `the chunks of instance ${instanceId} do not add up to the ${assembly.totalBytes} bytes announced`);
        return;
      }
      let body: KpiReplyBody;
      try {
        body = JSON.parse(decoder.decode(bytes)) as KpiReplyBody;
      } catch (error) {
        fail(instanceId, 'INVALID_REPLY', `the reply of instance ${instanceId} is not JSON: ${errorText(error)}`);
        return;
      }
      const invalid = replyProblem(body, instanceId, range, this.options.partitions);
      if (invalid !== undefined) {
        fail(instanceId, 'INVALID_REPLY', `the reply of instance ${instanceId}: ${invalid}`);
        return;
      }
      // Checked whole before any of it is added: a reply refused leaves the sums untouched.
      for (const [dayKey, counters] of body.days) {
        const sum = days.get(dayKey);
        if (sum === undefined) days.set(dayKey, mergeDay(emptyDay(), counters));
        else mergeDay(sum, counters);
      }
      mergeDay(before, body.before);
      for (const [week, active] of body.weeks) weeks.set(week, (weeks.get(week) ?? 0) + active);
      for (const [month, active] of body.months) months.set(month, (months.get(month) ?? 0) + active);
      for (const partition of body.partitions ?? []) covered.set(partition, (covered.get(partition) ?? 0) + 1);
      answered.add(instanceId);
      replyBytes.set(instanceId, bytes.length);
    };

    const onMessage = (message: Msg): 'finish' | undefined => {
      if (message.headers?.hasError === true && message.headers.code === 503 && message.data.length === 0) return 'finish'; // no responders: nobody is subscribed at all
      const instanceId = message.headers?.get(HEADER_INSTANCE) ?? '';
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(instanceId) || done(instanceId)) return undefined; // not ours, or a repeat of a reply already taken
      if (!assemblies.has(instanceId) && answered.size + failed.size + assemblies.size >= INSTANCES_MAX) return undefined;
      const code = message.headers?.get(HEADER_ERROR_CODE) ?? '';
      if (code !== '') {
        const known = Object.hasOwn(KPI_AGGREGATION_CODES, code) ? (code as KpiAggregationCode) : 'INTERNAL_ERROR';
        fail(instanceId, known, errorMessageOf(message, code));
        return settled() ? 'finish' : undefined;
      }
      const chunk = /^(\d{1,6})\/(\d{1,6})$/.exec(message.headers?.get(HEADER_KPI_CHUNK) ?? '');
      const totalBytes = Number(message.headers?.get(HEADER_KPI_BYTES) ?? NaN);
      const index = Number(chunk?.[1]);
      const count = Number(chunk?.[2]);
      if (chunk === null || !Number.isInteger(totalBytes) || totalBytes < 0 || index >= count || count < 1) {
        fail(instanceId, 'INVALID_REPLY', `instance ${instanceId} sent a reply without a valid ${HEADER_KPI_CHUNK} and ${HEADER_KPI_BYTES}`);
        return settled() ? 'finish' : undefined;
      }
      if (totalBytes > this.replyBytesMax) {
        fail(instanceId, 'INVALID_REPLY', `instance ${instanceId} announced a reply of ${totalBytes} bytes, over replyBytesMax ${this.replyBytesMax}`);
        return settled() ? 'finish' : undefined;
      }
      let assembly = assemblies.get(instanceId);
      if (assembly === undefined) {
        assembly = { count, totalBytes, chunks: new Array<Uint8Array | undefined>(count).fill(undefined), received: 0 };
        assemblies.set(instanceId, assembly);
      }
      if (assembly.count !== count || assembly.totalBytes !== totalBytes || assembly.chunks[index] !== undefined) {
        // Two responders with one id, or a reply resent: either way its pieces cannot be trusted together.
        fail(instanceId, 'INVALID_REPLY', `instance ${instanceId} sent inconsistent chunks (two instances with one id?)`);
        return settled() ? 'finish' : undefined;
      }
      assembly.chunks[index] = message.data;
      assembly.received += 1;
      if (assembly.received === assembly.count) merge(instanceId, assembly);
      return settled() ? 'finish' : undefined;
    };

    await new Promise<void>((resolveAll, rejectAll) => {
      let finished = false;
      let timer: NodeJS.Timeout | undefined;
      let subscription: Subscription | undefined;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        subscription?.unsubscribe(); // later chunks (stragglers past the timeout) go nowhere
        resolveAll();
      };
      // The connection's inbox prefix, if it has one: NATS permissions may allow replies only there.
      const inbox = createInbox((this.nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
      try {
        subscription = this.nc.subscribe(inbox, {
          callback: (error, message) => {
            if (finished) return;
            if (error !== null) return; // a subscription error: what came is kept, the timeout ends it
            if (onMessage(message) === 'finish') finish();
          },
        });
        // The subscription goes to the server before the request on the same connection: no reply can beat it.
        this.nc.publish(kpiScatterSubject(this.prefix), encoder.encode(JSON.stringify({ fromDay, toDay })), { reply: inbox });
      } catch (error) {
        finished = true;
        subscription?.unsubscribe();
        rejectAll(new KpiAggregationError('REQUEST_FAILED', `the KPI request could not be sent: ${errorText(error)}`, { cause: error }));
        return;
      }
      timer = setTimeout(finish, this.timeoutMs);
    });

    const missing = expected.filter((instanceId) => !done(instanceId));
    const answeredList = [...answered].sort();
    const partitionCount = this.options.partitions;
    const uncovered = partitionCount === undefined ? [] : Array.from({ length: partitionCount }, (_, partition) => partition).filter((partition) => !covered.has(partition));
    const overlapping = [...covered].filter(([, count]) => count > 1).map(([partition]) => partition).sort((a, b) => a - b);
    return {
      fromDay,
      toDay,
      days: new Map([...days].sort((a, b) => a[0] - b[0])),
      before,
      weeks: new Map([...weeks].sort((a, b) => a[0] - b[0])),
      months: new Map([...months].sort((a, b) => a[0] - b[0])),
      expected,
      answered: answeredList,
      missing,
      failed: [...failed.values()].sort((a, b) => a.instanceId.localeCompare(b.instanceId)),
      unexpected: answeredList.filter((instanceId) => !expectedSet.has(instanceId)),
      uncovered,
      overlapping,
      complete: expected.length > 0 && missing.length === 0 && failed.size === 0 && uncovered.length === 0 && overlapping.length === 0,
      replyBytes,
      elapsedMs: performance.now() - startedAt,
    };
  }

  /**
   * The KPI and program reports of [fromMs, toMs) from every instance's
   * counters, with whether they are complete. Asks for exactly the report's
   * days, so the adapter's `before` day stands for everything earlier.
   */
  async reports(
    program: ReportProgramInfo,
    period: ReportPeriod,
    fromMs: number,
    toMs: number,
  ): Promise<{ readonly kpis: ReportRow[]; readonly programKpis: ProgramReportRow[]; readonly aggregate: KpiAggregate }> {
    const aggregate = await this.aggregate(dayRangeOf(fromMs, toMs, program.utcOffsetMinutes));
    const source = kpiReportSource(aggregate);
    return { kpis: buildReport(source, program, period, fromMs, toMs), programKpis: buildProgramReport(source, program, period, fromMs, toMs), aggregate };
  }
}

/**
 * The aggregate as a ReportSource for buildReport and buildProgramReport.
 * The report reads every day before its range only for running totals
 * (liability, tiers, members, paid members: sums of day fields), so the
 * merged `before` stands for all of them as one day, fromDay − 1. Good for a
 * report whose range starts at fromDay (or later); one starting earlier
 * would take that day for a real one.
 */
export function kpiReportSource(aggregate: KpiAggregate): ReportSource {
  const days = new Map<number, DayCounters>([[aggregate.fromDay - 1, aggregate.before]]);
  for (const [dayKey, counters] of aggregate.days) days.set(dayKey, counters);
  return { days, weeks: aggregate.weeks, months: aggregate.months };
}

/** The keys of a KV bucket: the live set of ownership's heartbeat bucket, or the KPI holders. */
export async function instancesInBucket(kv: KV): Promise<string[]> {
  const ids: string[] = [];
  for await (const key of await kv.keys()) {
    ids.push(key);
    assert(ids.length <= INSTANCES_MAX, `more than ${INSTANCES_MAX} keys in the instances bucket`);
  }
  return ids.sort();
}

/**
 * Records that `instanceId` holds KPI counters, in a bucket without a TTL:
 * call it before the instance's first KPI commit. Unlike the heartbeat, it
 * stays when the instance stops, so an aggregate expects the instance for as
 * long as its counters exist (retiring it once they were merged elsewhere is
 * not built). Idempotent.
 */
export async function registerKpiHolder(kv: KV, instanceId: string, nowMs = Date.now()): Promise<void> {
  assert(/^[A-Za-z0-9_-]{1,64}$/.test(instanceId), 'an instance id is 1-64 of A-Z a-z 0-9 _ -');
  const status = await kv.status();
  assert(status.ttl === 0, 'the KPI holders bucket must not expire its keys: counters outlive the instance');
  try {
    await kv.create(instanceId, encoder.encode(JSON.stringify({ instanceId, sinceMs: nowMs })));
  } catch (error) {
    if ((await kv.get(instanceId))?.operation !== 'PUT') throw error; // not "already registered"
  }
}

// ---- helpers ----

function checkedPrefix(prefix: string | undefined): string {
  const checked = prefix ?? 'loyalty';
  assert(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(checked), 'the subject prefix is dot-separated tokens without wildcards');
  return checked;
}

function errorText(error: unknown): string {
  return (error as Error | undefined)?.message ?? String(error);
}

function errorMessageOf(message: Msg, code: string): string {
  try {
    return (JSON.parse(decoder.decode(message.data)) as { error: { message: string } }).error.message;
  } catch {
    return message.headers?.get(ServiceErrorHeader) ?? code;
  }
}

function concat(chunks: readonly Uint8Array[], totalBytes: number): Uint8Array | undefined {
  const length = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  if (length !== totalBytes) return undefined;
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

function isCount(value: unknown): boolean {
  return Number.isSafeInteger(value);
}

function isCounts(record: unknown, fields: readonly string[]): boolean {
  if (typeof record !== 'object' || record === null) return false;
  return fields.every((field) => (record as Record<string, unknown>)[field] === undefined || isCount((record as Record<string, unknown>)[field]));
}

const CURRENCY_FIELDS = ['issued', 'redeemed', 'expired', 'adjusted', 'clawedBack', 'liabilityDelta', 'redemptions'];
const DAY_FIELDS = ['enrollments', 'upgrades', 'downgrades', 'activeMembers', ...PROGRAM_COUNTERS];

/**
 * Enough of a DayCounters for mergeDay to sum it into safe integers: the
 * scalar fields (a field missing is 0, as for old records) and the maps'
 * values. A reply that fails is refused whole, never half-added.
 */
function dayProblem(counters: unknown): string | undefined {
  if (!isCounts(counters, DAY_FIELDS)) return 'a scalar counter is not a safe integer';
  const day = counters as DayCounters;
  for (const field of ['enrollments', 'upgrades', 'downgrades', 'activeMembers'] as const) if (!isCount(day[field])) return `${field} is missing`;
  if (typeof day.currencies !== 'object' || day.currencies === null || !Object.values(day.currencies).every((c) => isCounts(c, CURRENCY_FIELDS) && CURRENCY_FIELDS.every((f) => isCount((c as unknown as Record<string, unknown>)[f])))) {
    return 'currencies are not counters';
  }
  if (typeof day.tierDelta !== 'object' || day.tierDelta === null || !Object.values(day.tierDelta).every(isCount)) return 'tierDelta is not counters';
  if (typeof day.promotions !== 'object' || day.promotions === null || !Object.values(day.promotions).every((p) => isCount(p?.points) && isCount(p?.uses))) return 'promotions are not counters';
  for (const field of ['paid', 'donations', 'badges'] as const) {
    const value = day[field] as unknown;
    if (value !== undefined && (typeof value !== 'object' || value === null)) return `${field} is not an object`;
  }
  if (!Object.values(day.paid ?? {}).every((p) => isCounts(p, ['joined', 'renewed', 'switched', 'lapsed', 'cancelled', 'membersDelta', 'feesMinor']))) return 'paid is not counters';
  if (!Object.values(day.donations ?? {}).every((d) => isCount(d?.points) && isCount(d?.donations))) return 'donations are not counters';
  if (!Object.values(day.badges ?? {}).every(isCount)) return 'badges are not counters';
  return undefined;
}

function replyProblem(body: KpiReplyBody, instanceId: string, range: KpiDayRange, partitions?: number): string | undefined {
  if (typeof body !== 'object' || body === null) return 'not an object';
  if (body.instanceId !== instanceId) return `it names instance ${String(body.instanceId)}`;
  if (body.fromDay !== range.fromDay || body.toDay !== range.toDay) return `it is for days ${String(body.fromDay)}..${String(body.toDay)}, not ${range.fromDay}..${range.toDay}`;
  if (!Array.isArray(body.days) || !Array.isArray(body.weeks) || !Array.isArray(body.months)) return 'days, weeks or months is not a list';
  const seen = new Set<number>();
  for (const entry of body.days) {
    if (!Array.isArray(entry) || entry.length !== 2 || !Number.isInteger(entry[0]) || entry[0] < range.fromDay || entry[0] > range.toDay || seen.has(entry[0])) return 'a day is outside the range or repeated';
    seen.add(entry[0]);
    const problem = dayProblem(entry[1]);
    if (problem !== undefined) return `day ${entry[0]}: ${problem}`;
  }
  const beforeProblem = dayProblem(body.before);
  if (beforeProblem !== undefined) return `before: ${beforeProblem}`;
  for (const list of [body.weeks, body.months]) {
    for (const entry of list) if (!Array.isArray(entry) || entry.length !== 2 || !Number.isInteger(entry[0]) || !isCount(entry[1])) return 'a week or month is not [key, count]';
  }
  if (body.partitions !== undefined) {
    if (!Array.isArray(body.partitions)) return 'partitions is not a list';
    const limit = partitions ?? Number.MAX_SAFE_INTEGER;
    if (body.partitions.some((partition) => !Number.isInteger(partition) || partition < 0 || partition >= limit) || new Set(body.partitions).size !== body.partitions.length) {
      return `partitions must be distinct integers from 0 to ${limit - 1}`;
    }
  }
  return undefined;
}

