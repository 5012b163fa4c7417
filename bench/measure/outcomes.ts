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
 */

export interface OutcomeCounts {
  /** Messages received on the outcome subjects, all kinds. */
  messages: number;
  /** Events with at least one outcome. */
  eventsDone: number;
  /** Outcomes of a kind already seen for the same event (redelivery or re-publish). */
  duplicateOutcomes: number;
  /** Outcomes whose event id is not from this run, or that could not be parsed. */
  foreign: number;
  unparsable: number;
  /** Balance outcomes for another points currency than the one compared (or with none): counted, not compared. */
  balanceOtherCurrency: number;
  byKind: Record<string, number>;
}

export interface RejectionSample {
  eventId: string;
  code: string | undefined;
  reason: string | undefined;
}

interface OutcomePayload {
  kind?: unknown;
  eventId?: unknown;
  /** The spendable balance after the event (`balance` in the first contract draft). */
  spendable?: unknown;
  balance?: unknown;
  delta?: unknown;
  currency?: unknown;
  code?: unknown;
  reason?: unknown;
}

const KIND_BALANCE = 1;
const KIND_REJECTED = 2;
const KIND_OTHER = 4;

export class OutcomeCollector {
  readonly runId: string;
  readonly count: number;
  /** performance.now() when event i was handed to the NATS client (filled by the publisher). */
  readonly publishTimesMs: Float64Array;
  /** performance.now() of event i's first outcome; NaN until one arrives. */
  readonly doneTimesMs: Float64Array;
  /** Balance reported by event i's balance outcome (NaN if none), in `balanceCurrency`. */
  readonly balances: Float64Array;
  readonly deltas: Float64Array;
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
  private readonly balanceCurrency: string | undefined;

  constructor(runId: string, count: number, balanceCurrency?: string) {
    this.runId = runId;
    this.count = count;
    this.publishTimesMs = new Float64Array(count).fill(Number.NaN);
    this.doneTimesMs = new Float64Array(count).fill(Number.NaN);
    this.balances = new Float64Array(count).fill(Number.NaN);
    this.deltas = new Float64Array(count).fill(Number.NaN);
    this.kindsSeen = new Uint8Array(count);
    this.balanceCurrency = balanceCurrency;
  }

  /** Handles one outcome message; `nowMs` defaults to performance.now(). False: not an event of this run. */
  handle(subject: string, data: Uint8Array, nowMs = performance.now()): boolean {
    this.counts.messages += 1;
    let payload: OutcomePayload;
    try {
      payload = JSON.parse(this.decoder.decode(data)) as OutcomePayload;
    } catch {
      this.counts.unparsable += 1;
      return false;
    }
    const kind = typeof payload.kind === 'string' ? payload.kind : kindFromSubject(subject);
    this.counts.byKind[kind] = (this.counts.byKind[kind] ?? 0) + 1;
    const index = typeof payload.eventId === 'string' ? eventIndexOf(this.runId, payload.eventId) : -1;
    if (index < 0 || index >= this.count) {
      this.counts.foreign += 1;
      return false;
    }
    const bit = kind === 'balance' ? KIND_BALANCE : kind === 'rejected' ? KIND_REJECTED : KIND_OTHER;
    const seen = this.kindsSeen[index]!;
    if (seen === 0) {
      this.doneTimesMs[index] = nowMs;
      this.counts.eventsDone += 1;
      if (Number.isNaN(this.firstDoneAtMs)) this.firstDoneAtMs = nowMs;
      this.lastDoneAtMs = nowMs;
    }
    if ((seen & bit) !== 0 && bit !== KIND_OTHER) {
      this.counts.duplicateOutcomes += 1;
      return true;
    }
    this.kindsSeen[index] = seen | bit;
    if (bit === KIND_BALANCE) {
      if (this.balanceCurrency !== undefined && payload.currency !== this.balanceCurrency) {
        this.counts.balanceOtherCurrency += 1;
        return true;
      }
      const balance = typeof payload.spendable === 'number' ? payload.spendable : payload.balance;
      if (typeof balance === 'number') this.balances[index] = balance;
      if (typeof payload.delta === 'number') this.deltas[index] = payload.delta;
    } else if (bit === KIND_REJECTED) {
      const code = typeof payload.code === 'string' ? payload.code : undefined;
      this.rejectionCodes[code ?? '(none)'] = (this.rejectionCodes[code ?? '(none)'] ?? 0) + 1;
      if (this.rejectionSamples.length < 10) {
        this.rejectionSamples.push({
          eventId: String(payload.eventId),
          code,
          reason: typeof payload.reason === 'string' ? payload.reason : undefined,
        });
      }
    }
    return true;
  }

  isDone(index: number): boolean {
    return this.kindsSeen[index] !== 0;
  }

  hadBalance(index: number): boolean {
    return (this.kindsSeen[index]! & KIND_BALANCE) !== 0;
  }

  wasRejected(index: number): boolean {
    return (this.kindsSeen[index]! & KIND_REJECTED) !== 0;
  }

  /** Publish → first outcome, in ms, for every done event (NaN for the others). */
  latenciesMs(): Float64Array {
    const result = new Float64Array(this.count);
    for (let index = 0; index < this.count; index++) result[index] = this.doneTimesMs[index]! - this.publishTimesMs[index]!;
    return result;
  }

  /**
   * Time at which `fraction` of the events were done (by done time, not index),
   * for throughput over the steady middle of a run.
   */
  doneTimeAtFraction(fraction: number): number {
    const times = Float64Array.from(this.doneTimesMs.filter((time) => !Number.isNaN(time))).sort();
    if (times.length === 0) return Number.NaN;
    const position = Math.min(times.length - 1, Math.max(0, Math.ceil(fraction * times.length) - 1));
    return times[position]!;
  }
}

function kindFromSubject(subject: string): string {
  // loyalty.outcome.<kind>.<memberId>
  const parts = subject.split('.');
  return parts.length >= 3 ? parts[parts.length - 2]! : 'unknown';
}
