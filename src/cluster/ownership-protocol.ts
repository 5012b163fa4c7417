import type { Settings } from '../config/settings.js';
import { serializeError, type SerializedError } from '../api/thread-protocol.js';

/**
 * Messages between the main thread (src/cluster/ownership-thread.ts) and the
 * ownership thread (src/cluster/ownership-worker.ts). Plain objects: they are
 * structured-cloned across the thread boundary.
 */

export interface OwnershipWorkerData {
  /** natsUrl resolved. */
  readonly settings: Settings;
  readonly instanceId: string;
}

/** Ownership thread → main thread. */
export type OwnershipToMain =
  | { readonly type: 'started' }
  | { readonly type: 'startFailed'; readonly error: SerializedError }
  | { readonly type: 'acquired'; readonly partition: number; readonly epoch: number }
  /** Drain and commit the partition, then answer `released` with the same id: its lease is deleted after. */
  | { readonly type: 'releasing'; readonly id: number; readonly partition: number; readonly epoch: number }
  | { readonly type: 'lost'; readonly partition: number; readonly epoch: number; readonly reason: string }
  | { readonly type: 'gaveUp'; readonly partition: number }
  | { readonly type: 'roundFailed'; readonly error: SerializedError }
  | { readonly type: 'slowRound'; readonly lateMs: number; readonly tookMs: number }
  | { readonly type: 'renewed'; readonly tookMs: number }
  | { readonly type: 'stopped' }
  | { readonly type: 'stopFailed'; readonly error: SerializedError };

/** Main thread → ownership thread. */
export type OwnershipToWorker =
  | { readonly type: 'released'; readonly id: number; readonly error?: SerializedError }
  | { readonly type: 'giveUp'; readonly partition: number }
  | { readonly type: 'stop' };

export const serializeOwnershipError = serializeError;
