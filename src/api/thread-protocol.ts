import { ConfigError, EngineError, isEngineErrorCode } from '../config/errors.js';
import type { Settings } from '../config/settings.js';
import type { Program } from '../domain/program.js';
import type { TokenTableData } from './auth.js';
import type { Health, ProgramCheck } from './context.js';

/**
 * The messages between the engine's main thread and the HTTP API thread
 * (src/api/thread.ts starts it, src/api/worker.ts is its entry point). The API
 * thread serves HTTP and the NATS services from its own LMDB handle and NATS
 * connection; the few things only the main thread has (health, its metrics
 * registry, program activation, which pauses intake) are calls over the
 * thread's MessagePort, each with a timeout on the API side.
 */

/** The active program as every thread sees it. */
export interface ProgramState {
  readonly program: Program;
  readonly atMs: number;
  readonly source: 'file' | 'api';
}

export interface ApiWorkerData {
  /** The engine's settings, natsUrl resolved (the embedded server's URL when the engine runs one). */
  readonly settings: Settings;
  readonly tokens: TokenTableData;
  readonly program: ProgramState;
}

/** What the API thread may ask of the main thread. */
export interface MainThreadCalls {
  health(): Health;
  /** The main thread's Prometheus registry, rendered. */
  metrics(): { readonly contentType: string; readonly text: string };
  /** EngineProgramManager.activate: validate, persist, hand to every actor. */
  activateProgram(text: string): ProgramCheck;
}

export type CallMethod = keyof MainThreadCalls;
export type CallResult<M extends CallMethod> = ReturnType<MainThreadCalls[M]>;

/** The main thread's side of the calls: each may answer at once or later. */
export type MainThreadHandlers = { readonly [M in CallMethod]: (...args: Parameters<MainThreadCalls[M]>) => CallResult<M> | Promise<CallResult<M>> };

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  /** A ConfigError's fields. */
  readonly fields?: readonly string[];
}

/** API thread → main thread. */
export type ToMain =
  | { readonly type: 'ready'; readonly port: number }
  | { readonly type: 'startFailed'; readonly error: SerializedError }
  | { readonly type: 'call'; readonly id: number; readonly method: CallMethod; readonly args: readonly unknown[] };

/** Main thread → API thread. */
export type ToWorker =
  | { readonly type: 'result'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly type: 'result'; readonly id: number; readonly ok: false; readonly error: SerializedError }
  | { readonly type: 'program'; readonly state: ProgramState }
  /** Cluster mode: the partitions this instance consumes now, whose wallet subjects (<prefix>.svc.wallet.p<N>) the thread answers. */
  | { readonly type: 'partitions'; readonly owned: readonly number[] }
  | { readonly type: 'stop' };

export function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      name: error.name,
      message: error.message,
      ...(typeof code === 'string' ? { code } : {}),
      ...(error instanceof ConfigError ? { fields: [...error.fields] } : {}),
    };
  }
  return { name: 'Error', message: String(error) };
}

/** An error of the API thread's start, as the engine's start reports it (ConfigError and EngineError keep their kind). */
export function startError(error: SerializedError): Error {
  if (error.fields !== undefined) return new ConfigError(error.message.replace(/^invalid (.*?):\n[\s\S]*$/, '$1'), error.fields);
  return new EngineError(isEngineErrorCode(error.code) ? error.code : 'ERR_API_THREAD', `the HTTP API thread could not start: ${error.message}`);
}

export function deserializeError(error: SerializedError): Error {
  const result = new Error(error.message) as Error & { code?: string };
  result.name = error.name;
  if (error.code !== undefined) result.code = error.code;
  return result;
}

/** Bounds on the calls (the API side gives up; what the main thread was doing may still finish). */
export const CALL_TIMEOUT_MS: Readonly<Record<CallMethod, number>> = {
  health: 5_000,
  metrics: 10_000,
  // Activation pauses intake until every actor has the program: as long as an HTTP request may take.
  activateProgram: 120_000,
};
