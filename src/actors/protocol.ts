import type { Program } from '../domain/program.js';
import type { Settings } from '../config/settings.js';
import type { BatchResult, SweepResult } from './actor.js';
import type { BudgetLayout } from './budgets.js';
import type { PriorityResult } from './priority.js';

/** What an actor restored of a partition it was given: where its changelog and its consumer continue, and what it cost. */
export interface RestoredPosition {
  readonly partition: number;
  /** The changelog's last sequence (this owner's fence marker): its appends continue after it. */
  readonly changelogSeq: number;
  /** The highest input stream sequence committed for the partition. */
  readonly watermark: number;
  /** The highest whose outcomes were acknowledged (≤ watermark): its consumer resumes after it (restore.ts). */
  readonly publishedWatermark: number;
  readonly snapshotSeq: number | undefined;
  readonly commits: number;
  readonly bytes: number;
  /** Outbox entries its last owner left (committed, not seen acknowledged), published again. */
  readonly republished?: number;
  readonly tookMs: number;
}

/** Messages between the main thread and an actor thread (structured-cloned; batch buffers are transferred, budget buffers shared). */
export interface ActorWorkerData {
  readonly actorIndex: number;
  readonly settings: Settings;
  readonly program: Program;
  readonly budgets: BudgetLayout;
  readonly bootId: number;
  /** The URL the actor connects to (the embedded server's when settings.natsUrl is empty). */
  readonly natsUrl: string;
  /** settings.instanceId or the host name made one (instanceIdOf): the owner named in changelog records. */
  readonly instanceId: string;
}

export type ActorTask =
  | { readonly kind: 'batch'; readonly buffer: ArrayBuffer }
  | { readonly kind: 'sweep'; readonly nowMs: number; readonly limit: number }
  | { readonly kind: 'program'; readonly program: Program; readonly budgets: BudgetLayout }
  | { readonly kind: 'ping' }
  /** Cluster mode: the lease of `partition` is won with `epoch`: fence its changelog, restore it, serve it. */
  | { readonly kind: 'own'; readonly partition: number; readonly epoch: number }
  /** Cluster mode: stop serving `partition` (its batches are drained before). */
  | { readonly kind: 'release'; readonly partition: number }
  | { readonly kind: 'close' };

export type ActorReply =
  | { readonly kind: 'batch'; readonly result: BatchResult }
  | { readonly kind: 'sweep'; readonly result: SweepResult }
  | { readonly kind: 'ok' }
  | { readonly kind: 'owned'; readonly restored: RestoredPosition }
  /** The answer to a ping: the worker has initialised; what became of its priority. */
  | { readonly kind: 'ready'; readonly priority: PriorityResult };
