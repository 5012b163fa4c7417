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
  private handles: T[] = [];
  private done: boolean[] = [];
  private head = 0;
  private readonly indexBySequence = new Map<number, number>();
  private doneCount = 0;

  get inFlight(): number {
    return this.sequences.length - this.head;
  }

  /** Registers a delivered message. A sequence already in flight (a redelivery) keeps one slot. */
  track(sequence: number, handle: T): boolean {
    assert(Number.isSafeInteger(sequence) && sequence > 0, 'stream sequence must be a positive integer');
    if (this.indexBySequence.has(sequence)) {
      // Redelivered while the first delivery is still in flight: ack the newest handle.
      this.handles[this.indexBySequence.get(sequence)!] = handle;
      return false;
    }
    const last = this.sequences.length > this.head ? this.sequences[this.sequences.length - 1]! : -1;
    if (sequence > last) {
      this.indexBySequence.set(sequence, this.sequences.length);
      this.sequences.push(sequence);
      this.handles.push(handle);
      this.done.push(false);
      return true;
    }
    this.insertSorted(sequence, handle);
    return true;
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
    while (this.head < this.sequences.length && this.done[this.head]) {
      acked = this.handles[this.head];
      this.indexBySequence.delete(this.sequences[this.head]!);
      this.head += 1;
      this.doneCount -= 1;
    }
    if (this.head > 4096 && this.head * 2 > this.sequences.length) this.compact();
    return acked;
  }

  private insertSorted(sequence: number, handle: T): void {
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
