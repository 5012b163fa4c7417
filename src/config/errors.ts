/**
 * Every error code the engine gives an operator, with what it means and what
 * to do: one registry, so a code is never invented in passing. docs/operations.md
 * ("Error codes") lists the same table; test/unit/config/error-codes.test.ts
 * keeps the two equal. The HTTP API's codes are a separate set (src/api/errors.ts,
 * docs/api.md). Add a code here before throwing it.
 */
export const ENGINE_ERROR_CODES = {
  ERR_CONFIG_INVALID: 'a setting, token file or program field is invalid; the message names every bad field (exit code 2)',
  ERR_PROGRAM_FILE_UNREADABLE: 'the program file cannot be read (path, permissions)',
  ERR_HTTP_PORT_IN_USE: 'another process holds LOYALTY_HTTP_HOST:LOYALTY_HTTP_PORT; checked before NATS and the actors start',
  ERR_STORE_OPEN: 'LMDB cannot open the data directory (permissions, a full disk, a map smaller than the data)',
  ERR_STORE_FORMAT: 'the data directory was written by an engine with another store format',
  ERR_PARTITIONS_MISMATCH: 'LOYALTY_PARTITIONS differs from the count the data directory was created with',
  ERR_ACTOR_COMMIT_FAILED: 'an actor could not commit a batch; intake stopped without acking it (exit code 1, redelivered at the next start)',
  ERR_ACTOR_THREAD: 'an actor thread died of an uncaught error: its batches are not acked and the engine stops (exit code 1); a bug, report it with the log',
  ERR_STORE_DISK_FULL: 'an LMDB commit failed for want of disk space under LOYALTY_DATA_DIR (ENOSPC, or EIO from a short write with almost nothing free); nothing of it was acked (exit code 1): free space or grow the volume, then start again',
  ERR_STORE_MAP_FULL: 'LMDB reported MDB_MAP_FULL: raise LOYALTY_LMDB_MAP_SIZE_BYTES and start again; nothing of the failed batch was acked (lmdb-js 3.5.6 grows its map itself, so this is not expected)',
  ERR_STORE_IO: 'an LMDB write failed with an I/O error while the disk has room; nothing of it was acked (exit code 1): check the device (dmesg) before starting again',
  ERR_INTAKE_GAP: 'deliveries lost on the way (a cut connection) span more stream sequences than the engine holds open; it stops without acking past them (exit code 1) and a start redelivers them from the ack floor',
  ERR_ASSERTION: 'an invariant of the domain or store failed: a bug; the batch is not committed',
  ERR_API_THREAD: 'the HTTP API thread could not start or died',
  ERR_NATS_CONNECT: 'the NATS server at LOYALTY_NATS_URL cannot be reached',
  ERR_NATS_CREDENTIALS: 'the NATS credentials (LOYALTY_NATS_CREDS, user/password, token) cannot be read or are refused',
  ERR_NATS_CONFIG: 'a value for the embedded nats-server config is invalid',
  ERR_NATS_TOPOLOGY: 'the stream or consumer cannot be created or updated (JetStream disabled, limits, permissions)',
  ERR_NATS_SERVER_MISSING: 'no nats-server binary was found and none could be installed; the message says how to install it',
  ERR_NATS_SERVER_START: 'the embedded nats-server did not start; its log tail is in the message',
  ERR_NATS_PORT_IN_USE: 'the embedded nats-server port is taken (Debian runs a nats-server service on 4222)',
  ERR_NATS_SERVER_CRASHING: 'the embedded nats-server exited too often within a minute; the engine stops restarting it',
  ERR_NATS_SUPERVISOR_STATE: 'the embedded nats-server supervisor was used out of order: a bug',
  ERR_COMMAND_FAILED: 'a system command the engine runs (apt-get, setpriv) could not run',
  ERR_STREAM_PUBLISH: 'a JetStream publish was refused or not acknowledged in time; outcomes are published again',
  ERR_SUBMIT: 'an API write could not be published to the transaction stream',
  ERR_BUDGET_CONTENDED: 'cluster mode: a promotion budget key changed at every compare-and-set attempt; the operation is retried later',
  ERR_OWNERSHIP_THREAD: 'cluster mode: the thread that heartbeats and renews partition leases could not start or died; the engine stops (exit code 1) and its leases expire after the TTL',
  ERR_PARTITION_FENCED: 'cluster mode: another instance took the partition (its fence is in the changelog); this one stops processing it',
  ERR_CHANGELOG_RECORD: 'cluster mode: a changelog record is damaged (digest), cut short, of another version, store format, partition count or partition, or one is missing from the tail; the partition is not restored and stays marked incomplete',
  ERR_CHANGELOG_RECORD_TOO_LARGE: "cluster mode: one batch's changes of a partition exceed a changelog record (about 1 MiB) even compressed; the batch is not committed: lower LOYALTY_BATCH_SIZE_MAX",
} as const;

export type EngineErrorCode = keyof typeof ENGINE_ERROR_CODES;

/** Operating errors carry a stable code (one of ENGINE_ERROR_CODES) and their cause (fastify/undici style). */
export class EngineError extends Error {
  readonly code: EngineErrorCode;
  constructor(code: EngineErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'EngineError';
  }
}

export class ConfigError extends EngineError {
  /** Every bad field, one line each, so an operator fixes them all at once. */
  readonly fields: readonly string[];
  constructor(source: string, fields: readonly string[]) {
    super('ERR_CONFIG_INVALID', `invalid ${source}:\n  - ${fields.join('\n  - ')}`);
    this.fields = fields;
    this.name = 'ConfigError';
  }
}

export function isEngineErrorCode(code: unknown): code is EngineErrorCode {
  return typeof code === 'string' && Object.hasOwn(ENGINE_ERROR_CODES, code);
}
