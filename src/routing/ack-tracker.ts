import { assert } from '../domain/assert.js';

/**
 * The ack watermark for an AckAll consumer. Acking stream sequence S acks every
 * delivered message with a sequence ≤ S, so we may only ack S once everything
 * delivered at or below S is committed (or dead-lettered). Actors finish out of
 * order and redeliveries arrive out of order, so we keep the in-flight
 * sequences sorted and advance over the done prefix.
 */
export class AckTracker<T> {
  private sequences: number[] = [];
  /** undefined: a placeholder for a sequence expected again (see expectRedelivery), not delivered yet. */
  private handles: (T | undefined)[] = [];
  private done: boolean[] = [];
  private head = 0;
  private readonly indexBySequence = new Map<number, number>();
  private doneCount = 0;
  /** Placeholders whose message has not come yet. */
  private readonly awaited = new Set<number>();
  /** While set, the watermark does not pass this sequence (see holdAt). */
  private cap: number | undefined;
  private passed = 0;

  /** The highest sequence the watermark has passed (0 before the first): every sequence at or below it was committed or given up. */
  get ackedThrough(): number {
    return this.passed;
  }

  get inFlight(): number {
    return this.sequences.length - this.head;
  }

  /** How many sequences held open by expectRedelivery have not been delivered yet. */
  get awaitedCount(): number {
    return this.awaited.size;
  }

  /** Sequences held open by expectRedelivery that have not been delivered yet, lowest first (at most `limit`). */
  awaitedSequences(limit = Number.POSITIVE_INFINITY): number[] {
    const sequences: number[] = [];
    for (let index = this.head; index < this.sequences.length && sequences.length < limit; index++) {
      if (this.awaited.has(this.sequences[index]!)) sequences.push(this.sequences[index]!);
    }
    return sequences;
  }

  /**
   * Holds the watermark below every sequence from `from` to `to` not tracked
   * yet: deliveries the server made that never arrived (a cut connection).
   * Acking past them would ack them unread; once nats-server redelivers them
   * and they are committed, the watermark moves on. A
   * sequence that will never come (deleted from the stream meanwhile) is
   * given up with `release`. Returns the sequences it now waits for.
   */
  expectRedelivery(from: number, to: number, delivers?: ReadonlySet<number>): number[] {
    assert(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from > 0, 'redelivery range must be positive integers');
    const missing: number[] = [];
    for (let sequence = from; sequence <= to; sequence++) {
      // `delivers`: the sequences of the range the consumer delivers at all (a filtered consumer's).
      if (!this.indexBySequence.has(sequence) && (delivers === undefined || delivers.has(sequence))) missing.push(sequence);
    }
    if (missing.length === 0) return missing;
    for (const sequence of missing) this.awaited.add(sequence);
    const last = this.sequences.length > this.head ? this.sequences[this.sequences.length - 1]! : -1;
    if (missing[0]! > last) {
      for (const sequence of missing) this.insert(sequence, undefined);
      return missing;
    }
    // Merged in one pass: one splice per placeholder would be quadratic.
    const sequences: number[] = [];
    const handles: (T | undefined)[] = [];
    const done: boolean[] = [];
    let index = this.head;
    for (const sequence of missing) {
      while (index < this.sequences.length && this.sequences[index]! < sequence) {
        sequences.push(this.sequences[index]!);
        handles.push(this.handles[index]);
        done.push(this.done[index]!);
        index += 1;
      }
      sequences.push(sequence);
      handles.push(undefined);
      done.push(false);
    }
    for (; index < this.sequences.length; index++) {
      sequences.push(this.sequences[index]!);
      handles.push(this.handles[index]);
      done.push(this.done[index]!);
    }
    this.sequences = sequences;
    this.handles = handles;
    this.done = done;
    this.head = 0;
    this.reindex(0);
    return missing;
  }

  /**
   * Keeps the watermark at or below `sequence` until `releaseHold`: while
   * it is not yet known which sequences after it were lost on the way, an
   * ack past it could ack one of them unread.
   */
  holdAt(sequence: number): void {
    this.cap = this.cap === undefined ? sequence : Math.min(this.cap, sequence);
  }

  /** Ends holdAt. Returns the handle to ack, if the prefix moved. */
  releaseHold(): T | undefined {
    this.cap = undefined;
    return this.advance();
  }

  get holding(): number | undefined {
    return this.cap;
  }

  /** The lowest sequence not yet acked: whether it was delivered (not a placeholder) and committed. */
  get lowest(): { sequence: number; delivered: boolean; done: boolean } | undefined {
    if (this.head >= this.sequences.length) return undefined;
    return { sequence: this.sequences[this.head]!, delivered: !this.awaited.has(this.sequences[this.head]!), done: this.done[this.head]! };
  }

  /** Gives up a placeholder whose message no longer exists. Returns the handle to ack, if the prefix moved. */
  release(sequence: number): T | undefined {
    if (!this.awaited.delete(sequence)) return undefined;
    return this.complete(sequence);
  }

  /**
   * Registers a delivered message. A sequence already in flight (a
   * redelivery) keeps one slot. True when the message is new to the tracker
   * (a first delivery, or the one a placeholder waited for).
   */
  track(sequence: number, handle: T): boolean {
    assert(Number.isSafeInteger(sequence) && sequence > 0, 'stream sequence must be a positive integer');
    if (this.indexBySequence.has(sequence)) {
      // Redelivered while the first delivery is still in flight (or the
      // delivery a placeholder waited for): ack the newest handle.
      this.handles[this.indexBySequence.get(sequence)!] = handle;
      return this.awaited.delete(sequence);
    }
    this.insert(sequence, handle);
    return true;
  }

  private insert(sequence: number, handle: T | undefined): void {
    const last = this.sequences.length > this.head ? this.sequences[this.sequences.length - 1]! : -1;
    if (sequence > last) {
      this.indexBySequence.set(sequence, this.sequences.length);
      this.sequences.push(sequence);
      this.handles.push(handle);
      this.done.push(false);
      return;
    }
    this.insertSorted(sequence, handle);
  }

  /** Marks a sequence committed. Returns the handle to ack (the highest of the done prefix), if the prefix moved. */
  complete(sequence: number): T | undefined {
    const index = this.indexBySequence.get(sequence);
    if (index === undefined) return undefined; // acked already through an earlier watermark
    if (!this.done[index]) {
      this.done[index] = true;
      this.doneCount += 1;
    }
    return this.advance();
  }

  private advance(): T | undefined {
    let acked: T | undefined;
    while (this.head < this.sequences.length && this.done[this.head] && (this.cap === undefined || this.sequences[this.head]! <= this.cap)) {
      // A released placeholder has no handle: the last real one before it acks as far.
      acked = this.handles[this.head] ?? acked;
      if (this.sequences[this.head]! > this.passed) this.passed = this.sequences[this.head]!;
      this.indexBySequence.delete(this.sequences[this.head]!);
      this.head += 1;
      this.doneCount -= 1;
    }
    if (this.head > 4096 && this.head * 2 > this.sequences.length) this.compact();
    return acked;
  }

  private insertSorted(sequence: number, handle: T | undefined): void {
    let low = this.head;
    let high = this.sequences.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.sequences[middle]! < sequence) low = middle + 1;
      else high = middle;
    }
    this.sequences.splice(low, 0, sequence);
    this.handles.splice(low, 0, handle);
    this.done.splice(low, 0, false);
    this.reindex(low);
  }

  private compact(): void {
    this.sequences = this.sequences.slice(this.head);
    this.handles = this.handles.slice(this.head);
    this.done = this.done.slice(this.head);
    this.head = 0;
    this.reindex(0);
  }

  private reindex(from: number): void {
    for (let index = from; index < this.sequences.length; index++) this.indexBySequence.set(this.sequences[index]!, index);
  }
}
