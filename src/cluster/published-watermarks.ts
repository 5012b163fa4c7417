/**
 * Per partition, the highest input sequence up to which every committed
 * batch's outcomes are acknowledged by the outcome stream: batches are
 * published side by side and acknowledged in any order, so the mark moves
 * only over a prefix of them, in commit order. Each changelog record carries
 * it; a new owner resumes the input after it (restore.ts).
 */
export class PublishedWatermarks {
  private readonly byPartition = new Map<number, { mark: number; pending: { watermark: number; done: boolean }[] }>();

  own(partition: number, mark: number): void {
    this.byPartition.set(partition, { mark, pending: [] });
  }

  release(partition: number): void {
    this.byPartition.delete(partition);
  }

  of(partition: number): number {
    return this.byPartition.get(partition)?.mark ?? 0;
  }

  committed(highest: ReadonlyMap<number, number>): () => void {
    const entries: [{ mark: number; pending: { watermark: number; done: boolean }[] }, { watermark: number; done: boolean }][] = [];
    for (const [partition, watermark] of highest) {
      const entry = this.byPartition.get(partition);
      if (entry === undefined) continue; // released meanwhile: its next owner resumes from its own restore
      const item = { watermark, done: false };
      entry.pending.push(item);
      entries.push([entry, item]);
    }
    return () => {
      for (const [entry, item] of entries) {
        item.done = true;
        while (entry.pending.length > 0 && entry.pending[0]!.done) entry.mark = Math.max(entry.mark, entry.pending.shift()!.watermark);
      }
    };
  }
}
