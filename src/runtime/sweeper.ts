import type { SweepResult } from '../actors/actor.js';
import { assert } from '../domain/assert.js';

/**
 * Runs the scheduled sweep: every interval, each actor scans its members in
 * chunks (releasing pending points, expiring lots, reviewing tiers) until it
 * has seen all of them. Sweeps travel through the actors like batches, so the
 * single-writer rule holds; events keep flowing between chunks.
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

  /** One full pass over every actor's members; resolves when done. */
  async sweepOnce(): Promise<void> {
    const nowMs = (this.options.now ?? Date.now)();
    await Promise.all(
      Array.from({ length: this.options.actors }, async (_, actor) => {
        for (;;) {
          if (this.stopped) return;
          const started = performance.now();
          let result: SweepResult;
          try {
            result = await this.options.runSweep(actor, nowMs, this.options.chunkMembers);
          } catch (error) {
            this.options.onError(error);
            return;
          }
          this.options.onChunk(actor, result, (performance.now() - started) / 1000);
          if (result.finished) return;
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
