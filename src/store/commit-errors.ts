import { statfsSync } from 'node:fs';
import { EngineError } from '../config/errors.js';

/**
 * What a failed LMDB write means for an operator, and what to do about it.
 *
 * How lmdb-js 3.5.6 reports a failed commit (read in node_modules/lmdb and
 * measured, issue 14): the write's promise rejects with a generic
 * `Error('Commit failed (see commitError for details)')` whose `commitError` is
 * a second promise, rejected with the real error: an Error whose `code` is
 * LMDB's return code (an errno, or an MDB_* code below zero) and whose message
 * is mdb_strerror's text. A disk that fills during a commit mostly shows as
 * EIO (5, "Input/output error"), not ENOSPC: LMDB turns a short pwrite into
 * EIO; a write refused outright is ENOSPC (28). The map itself does not fill:
 * lmdb-js grows it (twice what the write needs) whenever a write needs pages
 * beyond it, so the map size set at open is where the map starts, not a limit
 * (docs/operations.md, "Resources"). MDB_MAP_FULL is mapped all the same.
 */
export const MDB_MAP_FULL = -30792;
const EIO = 5;
const ENOSPC = 28;
const EDQUOT = 122;
/** An EIO with less than this free on the data directory's file system is taken for a full disk (a short write). */
export const DISK_NEARLY_FULL_BYTES = 16 * 1024 * 1024;
/** How long to wait for lmdb-js's `commitError` (it is rejected right after the write itself). */
const CAUSE_WAIT_MS = 1_000;

export interface StoreWriteContext {
  /** The LMDB environment's directory (<dataDir>/state). */
  readonly path: string;
  readonly mapSizeBytes: number;
  /** Bytes free for unprivileged writers on the file system holding `path`; undefined when unknown. */
  readonly freeBytes?: (path: string) => number | undefined;
}

export function freeBytesOf(path: string): number | undefined {
  try {
    const stats = statfsSync(path);
    return stats.bavail * stats.bsize;
  } catch {
    return undefined;
  }
}

/**
 * Refuses to open the store on a disk that is already (nearly) full. Why: a
 * start there commits a few batches in freed pages and then fails, and
 * lmdb-js 3.5.6 sometimes dies in that state of a C assertion in its
 * free-list code instead ("Freelist record not found … Assertion
 * 'freelist_written_start >= mop_len' failed in mdb_freelist_save()",
 * SIGABRT; seen in the disk-full fault test under load), which tells the
 * operator nothing. So the start stops first, with the message that says
 * what to do.
 */
export function assertDiskRoom(dataDir: string, freeBytes: (path: string) => number | undefined = freeBytesOf): void {
  const free = freeBytes(dataDir);
  if (free === undefined || free >= DISK_NEARLY_FULL_BYTES) return;
  throw new EngineError(
    'ERR_STORE_DISK_FULL',
    `disk full under ${dataDir}: ${formatBytes(free)} free, the engine needs at least ${formatBytes(DISK_NEARLY_FULL_BYTES)} to start: free space or grow the volume, then start the engine again; nothing was consumed`,
  );
}

/** The error lmdb-js's generic "Commit failed" stands for (its `commitError`), or the error itself. */
export async function lmdbCause(error: unknown): Promise<unknown> {
  const pending = (error as { commitError?: unknown } | null)?.commitError;
  if (pending === undefined || pending === null || typeof (pending as Promise<unknown>).then !== 'function') return error;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<unknown>((resolve) => {
    timer = setTimeout(() => resolve(error), CAUSE_WAIT_MS);
    timer.unref();
  });
  try {
    return await Promise.race([(pending as Promise<unknown>).then(() => error, (cause: unknown) => cause), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A failed write as an EngineError that says what happened and what to do:
 * ERR_STORE_DISK_FULL, ERR_STORE_MAP_FULL or ERR_STORE_IO. `cause` is what
 * lmdbCause found (lmdb-js's own error); it becomes the cause.
 */
export function storeWriteError(cause: unknown, context: StoreWriteContext): EngineError {
  const code = (cause as { code?: unknown } | null)?.code;
  const text = (cause as Error | null)?.message ?? String(cause);
  const free = (context.freeBytes ?? freeBytesOf)(context.path);
  const freeText = free === undefined ? 'free space unknown' : `${formatBytes(free)} free`;
  const options = { cause };
  if (code === MDB_MAP_FULL || /MDB_MAP_FULL/.test(text)) {
    return new EngineError(
      'ERR_STORE_MAP_FULL',
      `LMDB map is full (MDB_MAP_FULL) at ${context.path}: raise LOYALTY_LMDB_MAP_SIZE_BYTES (now ${context.mapSizeBytes} bytes) and start the engine again; ` +
        'nothing of the failed batch was acked, it is delivered again',
      options,
    );
  }
  const noSpace = code === ENOSPC || code === EDQUOT || /no space left|quota exceeded/i.test(text);
  const shortWrite = (code === EIO || /input\/output error/i.test(text)) && free !== undefined && free < DISK_NEARLY_FULL_BYTES;
  if (noSpace || shortWrite) {
    const what = noSpace ? (code === EDQUOT ? 'EDQUOT, disk quota exceeded' : 'ENOSPC') : 'EIO from a short write';
    return new EngineError(
      'ERR_STORE_DISK_FULL',
      `disk full (${what}) under ${context.path}, ${freeText}: free space or grow the volume, then start the engine again; ` +
        'nothing of the failed batch was acked, it is delivered again',
      options,
    );
  }
  return new EngineError(
    'ERR_STORE_IO',
    `LMDB write failed at ${context.path}: ${text}${typeof code === 'number' ? ` (code ${code})` : ''}, ${freeText}; ` +
      'check the disk (dmesg, the volume\'s health) before starting the engine again; nothing of the failed batch was acked',
    options,
  );
}

function formatBytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${bytes} bytes`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
