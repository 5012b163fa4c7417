import type { Program } from '../domain/program.js';
import type { Settings } from '../config/settings.js';
import type { BatchResult, SweepResult } from './actor.js';
import type { BudgetLayout } from './budgets.js';
import type { PriorityResult } from './priority.js';

/** Messages between the main thread and an actor thread (structured-cloned; batch buffers are transferred, budget buffers shared). */
export interface ActorWorkerData {
  readonly actorIndex: number;
  readonly settings: Settings;
  readonly program: Program;
  readonly budgets: BudgetLayout;
  readonly bootId: number;
  /** The URL the actor connects to (the embedded server's when settings.natsUrl is empty). */
  readonly natsUrl: string;
}

export type ActorTask =
  | { readonly kind: 'batch'; readonly buffer: ArrayBuffer }
  | { readonly kind: 'sweep'; readonly nowMs: number; readonly limit: number }
  | { readonly kind: 'program'; readonly program: Program; readonly budgets: BudgetLayout }
  | { readonly kind: 'ping' }
  | { readonly kind: 'close' };

export type ActorReply =
  | { readonly kind: 'batch'; readonly result: BatchResult }
  | { readonly kind: 'sweep'; readonly result: SweepResult }
  | { readonly kind: 'ok' }
  /** The answer to a ping: the worker has initialised; what became of its priority. */
  | { readonly kind: 'ready'; readonly priority: PriorityResult };
