import { randomBytes } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { z } from 'zod';
import { EVENT_ID_LENGTH_MAX, memberIdSchema, validateEvent, type LoyaltyEvent } from '../domain/events.js';
import type { ApiContext } from './context.js';
import { countLines, csvRow, linesOf, splitCsvLine } from './csv.js';
import { ApiError, pathOf } from './errors.js';
import { jsonNestingError } from './json-depth.js';

/**
 * Bulk adjustments: a CSV or NDJSON file becomes one adjustment event per
 * valid line, published through the same submitter as every write, each
 * line's outcome followed by its event id. Jobs live in memory (bounded) and
 * keep running after the upload's 202. A line is never dropped: it ends
 * invalid (with its reason), applied, rejected (with the actor's reason),
 * failed (publish error) or still pending when the outcome wait runs out.
 */

export type BulkFormat = 'csv' | 'ndjson';
export type BulkJobState = 'running' | 'awaiting_outcomes' | 'completed' | 'incomplete' | 'failed' | 'stopped';
export type LineStatus = 'invalid' | 'queued' | 'submitted' | 'applied' | 'rejected' | 'failed';

export interface BulkJobsOptions {
  /** Jobs kept in memory (finished ones are evicted oldest first). */
  readonly jobsMax?: number;
  /** Jobs publishing at the same time. */
  readonly runningJobsMax?: number;
  /** Lines in one file. */
  readonly linesMax?: number;
  /** Lines kept over all retained jobs; the oldest finished jobs are evicted beyond it. */
  readonly retainedLinesMax?: number;
  /** JetStream publishes awaiting their ack, per job. */
  readonly publishWindow?: number;
  /** After the last publish, how long to wait for the remaining outcomes. */
  readonly outcomeWaitMs?: number;
  /** Refuse lines of unknown members (an operator's typo must not enroll someone). Default true. */
  readonly memberMustExist?: boolean;
}

const DEFAULTS = {
  jobsMax: 100,
  runningJobsMax: 4,
  linesMax: 1_000_000,
  retainedLinesMax: 2_000_000,
  publishWindow: 2_048,
  outcomeWaitMs: 120_000,
  memberMustExist: true,
};

export const CSV_COLUMNS_REQUIRED = ['memberId', 'direction', 'points', 'reason'] as const;
export const CSV_COLUMNS_OPTIONAL = ['currency', 'id', 'qualifying', 'occurredAt'] as const;
const CSV_COLUMNS = new Set<string>([...CSV_COLUMNS_REQUIRED, ...CSV_COLUMNS_OPTIONAL]);

const STATUS = ['invalid', 'queued', 'submitted', 'applied', 'rejected', 'failed'] as const satisfies readonly LineStatus[];
const S_INVALID = 0;
const S_QUEUED = 1;
const S_SUBMITTED = 2;
const S_APPLIED = 3;
const S_REJECTED = 4;
const S_FAILED = 5;

const blankToUndefined = (value: unknown) => (value === '' || value === null ? undefined : value);

/** One line, as CSV gives it (strings) or NDJSON (JSON values). */
const lineSchema = z
  .object({
    memberId: memberIdSchema,
    direction: z.enum(['credit', 'debit']),
    points: z.preprocess(
      (value) => (typeof value === 'string' && /^\s*\d{1,12}\s*$/.test(value) ? Number(value) : value),
      z.number({ error: 'must be a whole number of points' }).int().min(1).max(1_000_000_000),
    ),
    currency: z.preprocess(blankToUndefined, z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'a points currency id such as points').optional()),
    reason: z.string().min(1).max(256),
    id: z.preprocess(blankToUndefined, z.string().min(1).max(EVENT_ID_LENGTH_MAX).optional()),
    qualifying: z.preprocess(
      (value) => (value === 'true' || value === '1' ? true : value === 'false' || value === '0' || value === '' ? false : value),
      z.boolean().optional(),
    ),
    occurredAt: z.preprocess(blankToUndefined, z.iso.datetime({ offset: true }).optional()),
  })
  .strict();

export interface BulkCounts {
  total: number;
  invalid: number;
  queued: number;
  submitted: number;
  applied: number;
  rejected: number;
  pending: number;
  failed: number;
  duplicates: number;
}

export interface BulkJobStatus {
  readonly jobId: string;
  readonly state: BulkJobState;
  readonly format: BulkFormat;
  readonly operator: string;
  readonly createdAt: string;
  readonly finishedAt: string | null;
  readonly outcomesTracked: boolean;
  readonly counts: BulkCounts;
  readonly publishedPerSecond: number | null;
  readonly error?: string;
}

export interface BulkLineResult {
  readonly line: number;
  readonly id: string | null;
  readonly memberId: string | null;
  readonly status: LineStatus;
  readonly reason?: string;
  readonly sequence?: number;
  readonly duplicate?: boolean;
}

/** A parsed upload, checked enough to accept it (header, size, line count). */
export interface BulkUpload {
  readonly format: BulkFormat;
  readonly text: string;
  /** CSV: column names of the header line. */
  readonly columns?: readonly string[];
}

/**
 * The publish window. When full, the job waits until a quarter of it is free
 * and then publishes that many lines in one go: nats.js writes what is
 * published in one turn of the event loop as one socket write, so refilling
 * one slot per ack would cost a write per line (measured: ~2x slower).
 */
class PublishWindow {
  private free: number;
  private waiter: { readonly room: number; readonly resolve: () => void } | undefined;
  constructor(private readonly size: number) {
    this.free = size;
  }
  get full(): boolean {
    return this.free === 0;
  }
  /** Resolves when a quarter of the window is free again. */
  room(): Promise<void> {
    return new Promise<void>((resolve) => (this.waiter = { room: Math.max(1, this.size >> 2), resolve }));
  }
  take(): void {
    this.free -= 1;
  }
  release(): void {
    this.free += 1;
    if (this.waiter !== undefined && this.free >= this.waiter.room) {
      const { resolve } = this.waiter;
      this.waiter = undefined;
      resolve();
    }
  }
}

export class BulkJob {
  state: BulkJobState = 'running';
  finishedAtMs: number | null = null;
  error: string | undefined;
  readonly counts: BulkCounts = { total: 0, invalid: 0, queued: 0, submitted: 0, applied: 0, rejected: 0, pending: 0, failed: 0, duplicates: 0 };
  // Per line, in file order (parallel arrays: compact for a million lines).
  private readonly lineNumbers: number[] = [];
  private readonly ids: (string | null)[] = [];
  private readonly memberIds: (string | null)[] = [];
  private readonly statuses: number[] = [];
  private readonly sequences: number[] = [];
  private readonly reasons = new Map<number, string>();
  private readonly duplicateLines = new Set<number>();
  private readonly untrack = new Map<number, () => void>();
  private publishStartedMs = 0;
  private publishEndedMs = 0;
  private outcomeTimer: NodeJS.Timeout | undefined;
  private failedGraceTimer: NodeJS.Timeout | undefined;
  private failedGraceOver = false;
  private stopped = false;
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    readonly jobId: string,
    readonly format: BulkFormat,
    readonly operator: string,
    readonly createdAtMs: number,
    readonly outcomesTracked: boolean,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get lines(): number {
    return this.statuses.length;
  }

  get finished(): boolean {
    return this.state !== 'running' && this.state !== 'awaiting_outcomes';
  }

  status(): BulkJobStatus {
    const elapsedMs = (this.publishEndedMs || Date.now()) - this.publishStartedMs;
    return {
      jobId: this.jobId,
      state: this.state,
      format: this.format,
      operator: this.operator,
      createdAt: new Date(this.createdAtMs).toISOString(),
      finishedAt: this.finishedAtMs === null ? null : new Date(this.finishedAtMs).toISOString(),
      outcomesTracked: this.outcomesTracked,
      counts: { ...this.counts },
      publishedPerSecond: this.publishStartedMs > 0 && elapsedMs > 0 ? Math.round((this.counts.submitted * 1000) / elapsedMs) : null,
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }

  *results(filter?: ReadonlySet<LineStatus>): Generator<BulkLineResult> {
    for (let index = 0; index < this.statuses.length; index++) {
      const status = STATUS[this.statuses[index]!]!;
      if (filter !== undefined && !filter.has(status)) continue;
      const reason = this.reasons.get(index);
      const sequence = this.sequences[index]!;
      yield {
        line: this.lineNumbers[index]!,
        id: this.ids[index]!,
        memberId: this.memberIds[index]!,
        status,
        ...(reason !== undefined ? { reason } : {}),
        ...(sequence > 0 ? { sequence } : {}),
        ...(this.duplicateLines.has(index) ? { duplicate: true } : {}),
      };
    }
  }

  addInvalid(line: number, id: string | null, memberId: string | null, reason: string): void {
    const index = this.push(line, id, memberId, S_INVALID);
    this.reasons.set(index, reason);
    this.counts.invalid += 1;
  }

  addQueued(line: number, id: string, memberId: string): number {
    this.counts.queued += 1;
    return this.push(line, id, memberId, S_QUEUED);
  }

  track(index: number, stop: () => void): void {
    this.untrack.set(index, stop);
  }

  acked(index: number, sequence: number, duplicate: boolean): void {
    this.sequences[index] = sequence;
    this.counts.submitted += 1;
    if (duplicate) {
      this.counts.duplicates += 1;
      this.duplicateLines.add(index);
    }
    if (this.statuses[index] === S_QUEUED) {
      this.counts.queued -= 1;
      this.statuses[index] = S_SUBMITTED;
      if (this.outcomesTracked) this.counts.pending += 1;
    }
  }

  publishFailed(index: number, reason: string): void {
    if (this.statuses[index] !== S_QUEUED) return;
    this.statuses[index] = S_FAILED;
    this.counts.queued -= 1;
    this.counts.failed += 1;
    this.reasons.set(index, reason);
    // Keep listening: a publish that timed out may still have been stored, and its outcome then corrects the line.
  }

  outcome(index: number, outcome: Record<string, unknown>): void {
    const status = this.statuses[index];
    if (status !== S_QUEUED && status !== S_SUBMITTED && status !== S_FAILED) return;
    // The outcome can arrive before the PubAck: then the line was never counted pending.
    if (status === S_SUBMITTED) this.counts.pending -= 1;
    else if (status === S_QUEUED) this.counts.queued -= 1;
    else {
      this.counts.failed -= 1;
      this.reasons.delete(index);
    }
    if (outcome.kind === 'rejected') {
      this.statuses[index] = S_REJECTED;
      this.counts.rejected += 1;
      this.reasons.set(index, `${String(outcome.code ?? 'rejected')}: ${String(outcome.reason ?? '')}`);
    } else {
      this.statuses[index] = S_APPLIED;
      this.counts.applied += 1;
    }
    this.untrack.get(index)?.();
    this.untrack.delete(index);
    this.maybeComplete();
  }

  startedPublishing(): void {
    this.publishStartedMs = Date.now();
  }

  /** Every line was published (or failed): wait for the outcomes, bounded. */
  publishingDone(outcomeWaitMs: number): void {
    this.publishEndedMs = Date.now();
    if (this.stopped) return;
    if (!this.outcomesTracked) {
      this.finish('completed');
      return;
    }
    this.state = 'awaiting_outcomes';
    if (this.counts.failed > 0) {
      // A publish whose acknowledgement timed out may have been stored: give its outcome a moment.
      this.failedGraceTimer = setTimeout(() => {
        this.failedGraceOver = true;
        this.maybeComplete();
      }, Math.min(FAILED_GRACE_MS, outcomeWaitMs));
      this.failedGraceTimer.unref();
    } else {
      this.failedGraceOver = true;
    }
    this.maybeComplete();
    if (!this.finished) {
      this.outcomeTimer = setTimeout(() => {
        for (const [index] of this.untrack) this.reasons.set(index, `no outcome within ${Math.round(outcomeWaitMs / 1000)} s; the event is in the stream and may still be applied`);
        this.finish('incomplete');
      }, outcomeWaitMs);
      this.outcomeTimer.unref();
    }
  }

  fail(error: string): void {
    this.error = error;
    for (let index = 0; index < this.statuses.length; index++) {
      if (this.statuses[index] === S_QUEUED) this.publishFailed(index, `not published: ${error}`);
    }
    this.finish('failed');
  }

  stop(): void {
    if (this.finished) return;
    this.stopped = true;
    this.error = 'the engine stopped before the job finished';
    this.finish('stopped');
  }

  isStopped(): boolean {
    return this.stopped;
  }

  private maybeComplete(): void {
    if (this.state !== 'awaiting_outcomes' || this.counts.pending > 0 || this.counts.queued > 0) return;
    if (this.counts.failed > 0 && !this.failedGraceOver) return;
    this.finish('completed');
  }

  private finish(state: BulkJobState): void {
    if (this.finished) return;
    this.state = state;
    this.finishedAtMs = Date.now();
    if (this.outcomeTimer !== undefined) clearTimeout(this.outcomeTimer);
    if (this.failedGraceTimer !== undefined) clearTimeout(this.failedGraceTimer);
    for (const stop of this.untrack.values()) stop();
    this.untrack.clear();
    this.resolveDone();
  }

  private push(line: number, id: string | null, memberId: string | null, status: number): number {
    this.lineNumbers.push(line);
    this.ids.push(id);
    this.memberIds.push(memberId);
    this.statuses.push(status);
    this.sequences.push(0);
    this.counts.total += 1;
    return this.statuses.length - 1;
  }
}

/** How long a job with failed publishes waits for their outcomes anyway. */
const FAILED_GRACE_MS = 5_000;

const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export class BulkJobs {
  private readonly jobs = new Map<string, BulkJob>();
  readonly options: Required<BulkJobsOptions>;

  constructor(
    private readonly ctx: ApiContext,
    options: BulkJobsOptions = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
  }

  get(jobId: string): BulkJob | undefined {
    return this.jobs.get(jobId);
  }

  get size(): number {
    return this.jobs.size;
  }

  /** Checks an upload enough to accept it; throws VALIDATION_FAILED / TOO_MANY_LINES. */
  check(text: string, format: BulkFormat): BulkUpload {
    if (text.trim() === '') throw new ApiError('VALIDATION_FAILED', 'body: the file is empty', { issues: [{ field: 'body', message: 'empty' }] });
    const lines = countLines(text, this.options.linesMax + 1);
    if (lines > this.options.linesMax + (format === 'csv' ? 1 : 0)) {
      throw new ApiError('TOO_MANY_LINES', `the file has more than ${this.options.linesMax} lines; split it`, { linesMax: this.options.linesMax });
    }
    const header = linesOf(text).next().value as { line: number; text: string };
    if (format === 'ndjson') return { format, text };
    const fields = splitCsvLine(header.text);
    if (!Array.isArray(fields)) throw csvHeaderError([`line ${header.line}: ${fields.error}`]);
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const column of fields) {
      if (!CSV_COLUMNS.has(column)) problems.push(`unknown column "${column}" (columns: ${[...CSV_COLUMNS].join(', ')})`);
      if (seen.has(column)) problems.push(`column "${column}" appears twice`);
      seen.add(column);
    }
    for (const column of CSV_COLUMNS_REQUIRED) if (!seen.has(column)) problems.push(`missing column "${column}"`);
    if (problems.length > 0) throw csvHeaderError(problems);
    return { format, text, columns: fields };
  }

  /**
   * Starts a job (returns at once; the job runs on). A jobId already held
   * returns that job: re-posting with the same Idempotency-Key does not run twice.
   */
  start(upload: BulkUpload, operator: string, requestedJobId?: string): { job: BulkJob; existing: boolean } {
    if (requestedJobId !== undefined) {
      if (!JOB_ID_PATTERN.test(requestedJobId)) {
        throw new ApiError('VALIDATION_FAILED', 'headers.idempotency-key: a bulk job id is 1-64 letters, digits, "_" or "-"', {
          issues: [{ field: 'headers.idempotency-key', message: '1-64 letters, digits, "_" or "-"' }],
        });
      }
      const existing = this.jobs.get(requestedJobId);
      if (existing !== undefined) return { job: existing, existing: true };
    }
    const running = [...this.jobs.values()].filter((job) => !job.finished).length;
    if (running >= this.options.runningJobsMax) {
      throw new ApiError('TOO_MANY_JOBS', `${running} bulk jobs are running (at most ${this.options.runningJobsMax}); retry when one finishes`, undefined, {
        'retry-after': '5',
      });
    }
    this.evict(1);
    if (this.jobs.size >= this.options.jobsMax) {
      throw new ApiError('TOO_MANY_JOBS', `${this.jobs.size} bulk jobs are held and none has finished`, undefined, { 'retry-after': '5' });
    }
    const jobId = requestedJobId ?? `${Date.now().toString(36)}-${randomBytes(5).toString('hex')}`;
    const job = new BulkJob(jobId, upload.format, operator, Date.now(), typeof this.ctx.submitter.trackOutcomes === 'function');
    this.jobs.set(jobId, job);
    void this.run(job, upload).catch((error: unknown) => job.fail((error as Error)?.message ?? String(error)));
    return { job, existing: false };
  }

  /** Stops every running job's tracking (engine shutdown). */
  close(): void {
    for (const job of this.jobs.values()) job.stop();
  }

  private evict(room: number): void {
    let retained = [...this.jobs.values()].reduce((sum, job) => sum + job.lines, 0);
    for (const [jobId, job] of this.jobs) {
      if (this.jobs.size + room <= this.options.jobsMax && retained <= this.options.retainedLinesMax) break;
      if (!job.finished) continue;
      this.jobs.delete(jobId);
      retained -= job.lines;
    }
  }

  private async run(job: BulkJob, upload: BulkUpload): Promise<void> {
    const { submitter } = this.ctx;
    const program = this.ctx.programs.active();
    const currencies = program.currencies.map((currency) => currency.id);
    const occurredAt = new Date(job.createdAtMs).toISOString();
    const window = new PublishWindow(this.options.publishWindow);
    const idsInFile = new Map<string, number>();
    const inFlight = new Set<Promise<void>>();
    let seen = 0;
    job.startedPublishing();

    for (const { line, text } of linesOf(upload.text)) {
      if (job.isStopped()) break;
      if (upload.format === 'csv' && seen === 0) {
        seen += 1;
        continue; // the header, checked before the job started
      }
      seen += 1;
      if (seen % 2_000 === 0) await yieldToEventLoop();
      const fields = upload.format === 'csv' ? csvRecord(text, upload.columns!) : ndjsonRecord(text);
      if ('error' in fields) {
        job.addInvalid(line, null, null, fields.error);
        continue;
      }
      const parsed = lineSchema.safeParse(fields.value);
      const rawId = typeof fields.value.id === 'string' && fields.value.id !== '' ? fields.value.id : null;
      const rawMember = typeof fields.value.memberId === 'string' ? fields.value.memberId : null;
      if (!parsed.success) {
        job.addInvalid(line, rawId, rawMember, parsed.error.issues.map((issue) => `${pathOf(issue.path)}: ${issue.message}`).join('; '));
        continue;
      }
      const value = parsed.data;
      const eventId = value.id ?? `bulk:${job.jobId}:${line}`;
      const currency = value.currency ?? currencies[0]!;
      if (!currencies.includes(currency)) {
        job.addInvalid(line, eventId, value.memberId, `currency: unknown currency "${currency}"; the program has ${currencies.join(', ')}`);
        continue;
      }
      const idKey = `${value.memberId}\u0000${eventId}`;
      const firstLine = idsInFile.get(idKey);
      if (firstLine !== undefined) {
        job.addInvalid(line, eventId, value.memberId, `id: "${eventId}" for member ${value.memberId} is already on line ${firstLine}`);
        continue;
      }
      idsInFile.set(idKey, line);
      const validation = validateEvent({
        id: eventId,
        memberId: value.memberId,
        type: 'adjustment',
        occurredAt: value.occurredAt ?? occurredAt,
        direction: value.direction,
        points: value.points,
        currency,
        reason: value.reason,
        operator: job.operator,
        ...(value.qualifying === true ? { qualifying: true } : {}),
      });
      if (!validation.ok) {
        job.addInvalid(line, eventId, value.memberId, validation.reason);
        continue;
      }
      if (this.options.memberMustExist && this.ctx.reads.member(value.memberId) === undefined) {
        job.addInvalid(line, eventId, value.memberId, `memberId: member ${value.memberId} is not known`);
        continue;
      }
      const event: LoyaltyEvent = validation.event;
      const index = job.addQueued(line, eventId, value.memberId);
      if (submitter.trackOutcomes !== undefined) job.track(index, submitter.trackOutcomes(event.memberId, event.id, (outcome) => job.outcome(index, outcome)));
      // No await unless the window is full: see PublishWindow.
      if (window.full) await window.room();
      window.take();
      const publish = submitter
        .submit(event)
        .then(
          (result) => job.acked(index, result.sequence, result.duplicate),
          (error: unknown) => job.publishFailed(index, `publish failed: ${(error as Error)?.message ?? String(error)}`),
        )
        .finally(() => {
          window.release();
          inFlight.delete(publish);
        });
      inFlight.add(publish);
    }
    await Promise.all(inFlight);
    job.publishingDone(this.options.outcomeWaitMs);
  }
}

function csvHeaderError(problems: readonly string[]): ApiError {
  return new ApiError('VALIDATION_FAILED', `CSV header: ${problems.join('; ')}`, {
    issues: problems.map((message) => ({ field: 'body.header', message })),
    columns: { required: CSV_COLUMNS_REQUIRED, optional: CSV_COLUMNS_OPTIONAL },
  });
}

type Record_ = { value: Record<string, unknown> } | { error: string };

function csvRecord(text: string, columns: readonly string[]): Record_ {
  const fields = splitCsvLine(text);
  if (!Array.isArray(fields)) return { error: fields.error };
  if (fields.length !== columns.length) return { error: `expected ${columns.length} fields (${columns.join(',')}), found ${fields.length}` };
  const value: Record<string, unknown> = {};
  for (let index = 0; index < columns.length; index++) value[columns[index]!] = fields[index];
  return { value };
}

function ndjsonRecord(text: string): Record_ {
  const nesting = jsonNestingError(text);
  if (nesting !== undefined) return { error: nesting };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { error: `not valid JSON: ${(error as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { error: 'each line must be a JSON object' };
  return { value: value as Record<string, unknown> };
}

/** The report as NDJSON or CSV chunks (streamed: a million lines are never one string). */
export function* reportChunks(job: BulkJob, format: 'ndjson' | 'csv', filter?: ReadonlySet<LineStatus>): Generator<string> {
  let chunk = format === 'csv' ? csvRow(['line', 'id', 'memberId', 'status', 'reason', 'sequence', 'duplicate']) : '';
  for (const result of job.results(filter)) {
    chunk +=
      format === 'csv'
        ? csvRow([result.line, result.id, result.memberId, result.status, result.reason, result.sequence, result.duplicate === true ? 'true' : ''])
        : `${JSON.stringify(result)}\n`;
    if (chunk.length >= 64 * 1024) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk !== '') yield chunk;
}

export const LINE_STATUSES: readonly LineStatus[] = STATUS;
