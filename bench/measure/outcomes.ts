import { performance } from 'node:perf_hooks';
import { eventIndexOf } from '../generator/events.js';

/**
 * Collects the engine's outcomes (core NATS `loyalty.outcome.<kind>.<memberId>`)
 * and matches them to published events by the index encoded in the event id,
 * so matching is an array access, not a map lookup.
 *
 * An event counts as done at its FIRST outcome of any kind: outcomes are
 * published only after the batch holding the event is committed, so any
 * outcome proves the commit. Later outcomes for the same event (a tier change
 * after a balance, or a republished outcome after a redelivery) are counted
 * but do not move the event's time.
 *
 * For the correctness check it keeps, per event, the balances of the points
 * currency reported by the event's `balance` outcome and the code of a
 * `rejected` outcome. Only those two kinds are parsed as JSON; of the others
 * only the event id is read, to keep the bench's CPU share small.
 */

export interface OutcomeCounts {
  /** Messages received on the outcome subjects, all kinds. */
  messages: number;
  /** Events with at least one outcome. */
  eventsDone: number;
  /** Balance or rejected outcomes received again for the same event (redelivery or re-publish). */
  duplicateOutcomes: number;
  /** Outcomes whose event id is not from this run (warm-up, sweeps), or that could not be parsed. */
  foreign: number;
  unparsable: number;
  /** Balance outcomes for another points currency than the one compared: counted, not compared. */
  balanceOtherCurrency: number;
  byKind: Record<string, number>;
}

export interface RejectionSample {
  eventId: string;
  code: string | undefined;
  reason: string | undefined;
}

interface OutcomePayload {
  eventId?: unknown;
  spendable?: unknown;
  pending?: unknown;
  qualifying?: unknown;
  debt?: unknown;
  currency?: unknown;
  code?: unknown;
  reason?: unknown;
}

export const KIND_BALANCE = 1;
export const KIND_REJECTED = 2;
export const KIND_OTHER = 4;
/** Rejection code number for a code beyond the table's room. */
const CODE_OVERFLOW = 255;

export class OutcomeCollector {
  readonly runId: string;
  readonly count: number;
  /** performance.now() when event i was handed to the NATS client (filled by the publisher). */
  readonly publishTimesMs: Float64Array;
  /** performance.now() of event i's first outcome; NaN until one arrives. */
  readonly doneTimesMs: Float64Array;
  /** The points currency's balances after event i, from its balance outcome (NaN: none). */
  readonly spendable: Float64Array;
  readonly pending: Float64Array;
  readonly qualifying: Float64Array;
  readonly debt: Float64Array;
  /** 0: not rejected; else 1 + index into rejectionCodeNames. */
  readonly rejectionCode: Uint8Array;
  readonly rejectionCodeNames: string[] = [];
  /** Bit set of the outcome kinds seen per event (balance, rejected, other). */
  private readonly kindsSeen: Uint8Array;
  readonly counts: OutcomeCounts = {
    messages: 0,
    eventsDone: 0,
    duplicateOutcomes: 0,
    foreign: 0,
    unparsable: 0,
    balanceOtherCurrency: 0,
    byKind: {},
  };
  readonly rejectionSamples: RejectionSample[] = [];
  readonly rejectionCodes: Record<string, number> = {};
  firstDoneAtMs = Number.NaN;
  lastDoneAtMs = Number.NaN;
  private readonly decoder = new TextDecoder();
  private readonly pointsCurrency: string;
  private readonly codeNumbers = new Map<string, number>();
  /** Latencies of the events done since the last takeRecentLatencies(), for live figures. */
  private recent: number[] = [];

  constructor(runId: string, count: number, pointsCurrency: string) {
    this.runId = runId;
    this.count = count;
    this.publishTimesMs = new Float64Array(count).fill(Number.NaN);
    this.doneTimesMs = new Float64Array(count).fill(Number.NaN);
    this.spendable = new Float64Array(count).fill(Number.NaN);
    this.pending = new Float64Array(count).fill(Number.NaN);
    this.qualifying = new Float64Array(count).fill(Number.NaN);
    this.debt = new Float64Array(count).fill(Number.NaN);
    this.rejectionCode = new Uint8Array(count);
    this.kindsSeen = new Uint8Array(count);
    this.pointsCurrency = pointsCurrency;
  }

  /** Handles one outcome message; `nowMs` defaults to performance.now(). False: not an event of this run. */
  handle(subject: string, data: Uint8Array, nowMs = performance.now()): boolean {
    this.counts.messages += 1;
    const kind = kindFromSubject(subject);
    this.counts.byKind[kind] = (this.counts.byKind[kind] ?? 0) + 1;
    const text = this.decoder.decode(data);
    const bit = kind === 'balance' ? KIND_BALANCE : kind === 'rejected' ? KIND_REJECTED : KIND_OTHER;
    let payload: OutcomePayload | undefined;
    let eventId: string | undefined;
    if (bit === KIND_OTHER) {
      eventId = eventIdIn(text);
      if (eventId === undefined) {
        try {
          const parsed = JSON.parse(text) as OutcomePayload;
          eventId = typeof parsed.eventId === 'string' ? parsed.eventId : undefined;
        } catch {
          this.counts.unparsable += 1;
          return false;
        }
      }
    } else {
      try {
        payload = JSON.parse(text) as OutcomePayload;
      } catch {
        this.counts.unparsable += 1;
        return false;
      }
      eventId = typeof payload.eventId === 'string' ? payload.eventId : undefined;
    }
    const index = eventId === undefined ? -1 : eventIndexOf(this.runId, eventId);
    if (index < 0 || index >= this.count) {
      this.counts.foreign += 1;
      return false;
    }
    const seen = this.kindsSeen[index]!;
    if (seen === 0) {
      this.doneTimesMs[index] = nowMs;
      this.counts.eventsDone += 1;
      if (Number.isNaN(this.firstDoneAtMs)) this.firstDoneAtMs = nowMs;
      this.lastDoneAtMs = nowMs;
      this.recent.push(nowMs - this.publishTimesMs[index]!);
    }
    if (bit === KIND_OTHER) {
      this.kindsSeen[index] = seen | bit;
      return true;
    }
    if (bit === KIND_BALANCE && payload!.currency !== this.pointsCurrency) {
      this.counts.balanceOtherCurrency += 1;
      this.kindsSeen[index] = seen | KIND_OTHER;
      return true;
    }
    if ((seen & bit) !== 0) {
      this.counts.duplicateOutcomes += 1;
      return true;
    }
    this.kindsSeen[index] = seen | bit;
    if (bit === KIND_BALANCE) {
      this.spendable[index] = numberOr(payload!.spendable);
      this.pending[index] = numberOr(payload!.pending);
      this.qualifying[index] = numberOr(payload!.qualifying);
      this.debt[index] = numberOr(payload!.debt);
    } else {
      const code = typeof payload!.code === 'string' ? payload!.code : '(none)';
      this.rejectionCode[index] = this.codeNumber(code);
      this.rejectionCodes[code] = (this.rejectionCodes[code] ?? 0) + 1;
      if (this.rejectionSamples.length < 10) {
        this.rejectionSamples.push({ eventId: String(payload!.eventId), code, reason: typeof payload!.reason === 'string' ? payload!.reason : undefined });
      }
    }
    return true;
  }

  /** Latencies (ms) of the events done since the previous call. */
  takeRecentLatencies(): number[] {
    const taken = this.recent;
    this.recent = [];
    return taken;
  }

  isDone(index: number): boolean {
    return this.kindsSeen[index] !== 0;
  }

  hadBalance(index: number): boolean {
    return (this.kindsSeen[index]! & KIND_BALANCE) !== 0;
  }

  /** The rejection code of event i, or undefined when it was not rejected. */
  rejectionOf(index: number): string | undefined {
    const number = this.rejectionCode[index]!;
    if (number === 0) return undefined;
    return number === CODE_OVERFLOW ? '(other)' : this.rejectionCodeNames[number - 1];
  }

  /** Publish → first outcome, in ms, for every done event (NaN for the others). */
  latenciesMs(): Float64Array {
    const result = new Float64Array(this.count);
    for (let index = 0; index < this.count; index++) result[index] = this.doneTimesMs[index]! - this.publishTimesMs[index]!;
    return result;
  }

  /** Time at which `fraction` of the events were done (by done time, not index), for the steady middle of a run. */
  doneTimeAtFraction(fraction: number): number {
    const times = Float64Array.from(this.doneTimesMs.filter((time) => !Number.isNaN(time))).sort();
    if (times.length === 0) return Number.NaN;
    const position = Math.min(times.length - 1, Math.max(0, Math.ceil(fraction * times.length) - 1));
    return times[position]!;
  }

  private codeNumber(code: string): number {
    let number = this.codeNumbers.get(code);
    if (number === undefined) {
      if (this.rejectionCodeNames.length >= CODE_OVERFLOW - 1) return CODE_OVERFLOW;
      this.rejectionCodeNames.push(code);
      number = this.rejectionCodeNames.length;
      this.codeNumbers.set(code, number);
    }
    return number;
  }
}

function numberOr(value: unknown): number {
  return typeof value === 'number' ? value : Number.NaN;
}

/** loyalty.outcome.<kind>.<memberId> → kind (the member id has no dots). */
export function kindFromSubject(subject: string): string {
  const last = subject.lastIndexOf('.');
  const before = last <= 0 ? -1 : subject.lastIndexOf('.', last - 1);
  return before < 0 ? 'unknown' : subject.slice(before + 1, last);
}

/** The "eventId" string of an outcome's JSON text without parsing all of it (ids have no escapes). */
export function eventIdIn(text: string): string | undefined {
  const key = '"eventId":"';
  const start = text.indexOf(key);
  if (start < 0) return undefined;
  const end = text.indexOf('"', start + key.length);
  return end < 0 ? undefined : text.slice(start + key.length, end);
}
