import type { ProgramCheck, ProgramManager } from '../api/context.js';
import { ConfigError } from '../config/errors.js';
import { parseProgramText } from '../config/program-file.js';
import type { Program } from '../domain/program.js';

/**
 * The active program and its replacement without a restart. Activation
 * validates first (every bad field named), persists the text (so a restart
 * keeps it), then hands it to every actor while intake is paused, so all
 * actors switch between the same two batches.
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

export class EngineProgramManager implements ProgramManager {
  private current: Program;
  private since: { atMs: number; source: 'file' | 'api' };
  private activating: Promise<unknown> = Promise.resolve();

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

  validate(text: string): ProgramCheck {
    return checkProgramText(text);
  }

  activate(text: string): Promise<ProgramCheck> {
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
