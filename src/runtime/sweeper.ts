import type { SweepResult } from '../actors/actor.js';
import { assert } from '../domain/assert.js';

/**
 * Runs the scheduled sweep: every interval, each actor reads up to one chunk
 * of its members whose indexed due time has come (releasing pending points,
 * expiring lots, reviewing tiers), continuing where the last chunk stopped.
 * Members with nothing due are never read: every member write records the
 * member's next due time in the store's due index. After a program change an
 * actor also walks all its members once, a chunk at a time, to re-index them.
 * Why chunks: a sweep is one actor batch, and events wait behind it. Sweeps
 * travel through the actors like batches, so the single-writer rule holds.
 */
export interface SweeperOptions {
  readonly actors: number;
  readonly intervalMs: number;
  readonly chunkMembers: number;
  readonly runSweep: (actor: number, nowMs: number, limit: number) => Promise<SweepResult>;
  readonly onChunk: (actor: number, result: SweepResult, seconds: number) => void;
  readonly onError: (error: unknown) => void;
  readonly now?: () => number;
}

export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: SweeperOptions) {
    assert(options.intervalMs > 0, 'sweep interval must be positive');
    assert(options.chunkMembers > 0, 'sweep chunk must be positive');
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.running === undefined) this.running = this.sweepOnce().finally(() => (this.running = undefined));
    }, this.options.intervalMs);
    this.timer.unref();
  }

  /** One chunk per actor. */
  async sweepOnce(): Promise<void> {
    const nowMs = (this.options.now ?? Date.now)();
    await Promise.all(
      Array.from({ length: this.options.actors }, async (_, actor) => {
        if (this.stopped) return;
        const started = performance.now();
        try {
          const result = await this.options.runSweep(actor, nowMs, this.options.chunkMembers);
          this.options.onChunk(actor, result, (performance.now() - started) / 1000);
        } catch (error) {
          this.options.onError(error);
        }
      }),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.running;
  }
}
