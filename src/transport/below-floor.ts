/**
 * Ack-pending entries BELOW the consumer's ack floor: how a restarted
 * nats-server 2.9 can leave messages redelivered for good, and how the
 * engine finds them.
 *
 * How they arise (nats-external fault test, about 1 run in 4 under load):
 * nats-server is SIGKILLed and restarted on its store, and the consumer state
 * it reads back lags what it had delivered. Acks the engine sent before the
 * crash reach it after the restart (nats.js buffers publishes while
 * disconnected; AckAllSender re-sends the last one on reconnect), and an
 * ack-all moves the floor past the server's delivery pointer, which it leaves
 * where it was. The server then delivers again messages below its own floor;
 * each enters its pending map, and no ack can take it out again: with
 * AckPolicy all, processAckMsg returns at once for `sseq <= o.asflr`, and
 * +TERM goes the same way. They are redelivered every ack wait, as duplicates
 * the engine drops, until the consumer is recreated (what a start does).
 *
 * How they are seen: with AckPolicy all the floor moves as a prefix, so every
 * pending entry lies in (ack floor, last delivered]. More ack-pending than
 * that range holds can only be entries below the floor. The check runs when
 * the engine is handed a message it has already acked past (only then can
 * one exist: the server's floor never passes the engine's acks), at most once
 * per `intervalMs`, one lookup at a time. Deleted messages in the range only
 * make it larger, so the count can miss a few entries but never reports one
 * that is not there.
 */

/** What consumer info tells about where it stands (stream sequences). */
export interface ConsumerStanding {
  /** ack_floor.stream_seq */
  readonly ackFloor: number;
  /** delivered.stream_seq */
  readonly delivered: number;
  /** num_ack_pending */
  readonly ackPending: number;
}

/** Pending entries that can only lie below the ack floor (0 for a healthy consumer). */
export function pendingBelowFloor(standing: ConsumerStanding): number {
  const aboveFloor = Math.max(0, standing.delivered - standing.ackFloor);
  return Math.max(0, standing.ackPending - aboveFloor);
}

export interface BelowFloorWatchOptions {
  readonly lookup: () => Promise<ConsumerStanding>;
  /** Entries below the floor were found: recreate the consumer at its floor. */
  readonly onFound: (standing: ConsumerStanding, belowFloor: number) => void;
  /** Fewest milliseconds between two lookups. */
  readonly intervalMs?: number;
  readonly now?: () => number;
}

export const BELOW_FLOOR_CHECK_INTERVAL_MS = 2_000;

export class BelowFloorWatch {
  private checking = false;
  private wanted = false;
  private lastCheckMs = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly intervalMs: number;
  private readonly now: () => number;

  constructor(private readonly options: BelowFloorWatchOptions) {
    this.intervalMs = options.intervalMs ?? BELOW_FLOOR_CHECK_INTERVAL_MS;
    this.now = options.now ?? Date.now;
  }

  /** A delivery of a stream sequence the engine has acked past. */
  sighted(): void {
    if (this.closed) return;
    this.wanted = true;
    if (this.checking || this.timer !== undefined) return;
    const waitMs = this.lastCheckMs + this.intervalMs - this.now();
    if (waitMs <= 0) {
      void this.check();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.check();
    }, waitMs);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async check(): Promise<void> {
    if (this.closed || !this.wanted) return;
    this.wanted = false;
    this.checking = true;
    this.lastCheckMs = this.now();
    try {
      const standing = await this.options.lookup();
      const below = pendingBelowFloor(standing);
      if (below > 0 && !this.closed) this.options.onFound(standing, below);
    } catch {
      this.wanted = true; // NATS away: look again at the next sighting or interval
    } finally {
      this.checking = false;
    }
    if (this.wanted && !this.closed) this.sighted();
  }
}
