import type { ProgramCheck, ProgramManager } from '../api/context.js';
import { ConfigError } from '../config/errors.js';
import { parseProgramText } from '../config/program-file.js';
import { assert } from '../domain/assert.js';
import type { Program } from '../domain/program.js';

/**
 * The active program and its replacement without a restart. Activation
 * validates first (every bad field named), persists the text (so a restart
 * keeps it), then hands it to every actor while intake is paused, so all
 * actors switch between the same two batches.
 *
 * Cluster mode (`distribute`, wired by src/runtime/cluster-globals.ts): an
 * activation only validates and writes the cluster's program key
 * (src/cluster/program-sync.ts); every instance, this one included, switches
 * when its watch of the key delivers it (`applyPublished`), so no instance
 * runs a program the others do not. The activation answers once this
 * instance has switched.
 */
export interface ProgramManagerOptions {
  readonly initial: Program;
  readonly initialSource: 'file' | 'api';
  readonly initialAtMs: number;
  readonly persist: (text: string, atMs: number) => Promise<void>;
  /** Pauses intake, swaps the program in every actor (and its budgets), resumes. */
  readonly apply: (program: Program) => Promise<void>;
  readonly now?: () => number;
}

/** Cluster mode: where an activation goes instead of the actors. */
export interface ProgramDistribution {
  /** Validates and writes the program to the cluster's key: its revision when valid. */
  readonly publish: (text: string, atMs: number) => Promise<ProgramCheck & { readonly revision?: number }>;
  /** Replaces the options' `apply` (cluster mode also moves the budget reservations). */
  readonly apply?: (program: Program) => Promise<void>;
  /** The text this instance runs now, when it came from the API (an equal published text is not applied again). */
  readonly runningText?: string;
  /** How long an activation waits for this instance's watch to apply it before answering anyway (it is published). */
  readonly appliedWaitMs?: number;
  /** Told when an activation answered before this instance applied it. */
  readonly onNotYetApplied?: (revision: number, waitedMs: number) => void;
}

/** A program as read from the cluster's key (src/cluster/program-sync.ts ActiveProgram). */
export interface PublishedProgram {
  readonly text: string;
  readonly activatedAtMs: number;
  readonly revision: number;
}

const APPLIED_WAIT_MS = 30_000;

export class EngineProgramManager implements ProgramManager {
  private current: Program;
  private since: { atMs: number; source: 'file' | 'api' };
  private activating: Promise<unknown> = Promise.resolve();
  private distribution: ProgramDistribution | undefined;
  private runningText: string | undefined;
  /** Cluster mode: the highest key revision applied here. */
  private appliedRevision = 0;
  private readonly revisionWaiters = new Set<{ readonly revision: number; readonly resolve: () => void }>();

  constructor(private readonly options: ProgramManagerOptions) {
    this.current = options.initial;
    this.since = { atMs: options.initialAtMs, source: options.initialSource };
  }

  active(): Program {
    return this.current;
  }

  activeSince(): { readonly atMs: number; readonly source: 'file' | 'api' } {
    return this.since;
  }

  /** Cluster mode: the key revision this instance runs (0 before it applied one). */
  get revision(): number {
    return this.appliedRevision;
  }

  validate(text: string): ProgramCheck {
    return checkProgramText(text);
  }

  /** Cluster mode from now on (see the class comment); called once, before the watch of the key starts. */
  distribute(distribution: ProgramDistribution): void {
    assert(this.distribution === undefined, 'a program manager is distributed once');
    this.distribution = distribution;
    this.runningText = distribution.runningText;
  }

  activate(text: string): Promise<ProgramCheck> {
    if (this.distribution !== undefined) return this.activateInCluster(this.distribution, text);
    // One activation at a time, in call order.
    const next = this.activating.then(async (): Promise<ProgramCheck> => {
      const check = this.validate(text);
      if (!check.ok) return check;
      const atMs = (this.options.now ?? Date.now)();
      await this.options.persist(text, atMs);
      await this.options.apply(check.program);
      this.current = check.program;
      this.since = { atMs, source: 'api' };
      return check;
    });
    this.activating = next.catch(() => undefined);
    return next;
  }

  /**
   * Cluster mode: applies a program read from the cluster's key (the watch
   * calls it in revision order; at start with the current one). Persisted
   * first, so a restart that cannot read the key runs the last one applied.
   * A revision already applied is skipped; a text that does not parse here
   * (an instance of another version) throws its ConfigError.
   */
  applyPublished(published: PublishedProgram): Promise<void> {
    const next = this.activating.then(async (): Promise<void> => {
      if (published.revision <= this.appliedRevision) return;
      const program = parseProgramText(published.text, `program of the cluster's key (revision ${published.revision})`);
      if (published.text !== this.runningText) {
        await this.options.persist(published.text, published.activatedAtMs);
        await (this.distribution?.apply ?? this.options.apply)(program);
        this.current = program;
        this.since = { atMs: published.activatedAtMs, source: 'api' };
        this.runningText = published.text;
      }
      this.appliedRevision = published.revision;
      for (const waiter of [...this.revisionWaiters]) {
        if (waiter.revision > this.appliedRevision) continue;
        this.revisionWaiters.delete(waiter);
        waiter.resolve();
      }
    });
    this.activating = next.catch(() => undefined);
    return next;
  }

  private async activateInCluster(distribution: ProgramDistribution, text: string): Promise<ProgramCheck> {
    const atMs = (this.options.now ?? Date.now)();
    const published = await distribution.publish(text, atMs);
    if (!published.ok) return published;
    assert(published.revision !== undefined && published.revision > 0, 'a published program has its key revision');
    const waitMs = distribution.appliedWaitMs ?? APPLIED_WAIT_MS;
    const startedMs = Date.now();
    if (!(await this.appliedThrough(published.revision, waitMs))) distribution.onNotYetApplied?.(published.revision, Date.now() - startedMs);
    return { ok: true, program: published.program };
  }

  /** Resolves true once a revision ≥ `revision` is applied here, false after `timeoutMs`. */
  private appliedThrough(revision: number, timeoutMs: number): Promise<boolean> {
    if (this.appliedRevision >= revision) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        revision,
        resolve: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        this.revisionWaiters.delete(waiter);
        resolve(false);
      }, timeoutMs);
      this.revisionWaiters.add(waiter);
    });
  }
}

/** Parses and validates a program file's text: the program, or every bad field named. */
export function checkProgramText(text: string): ProgramCheck {
  try {
    return { ok: true, program: parseProgramText(text, 'program') };
  } catch (error) {
    if (error instanceof ConfigError) return { ok: false, errors: error.fields };
    throw error;
  }
}
