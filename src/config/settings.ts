import { availableParallelism, hostname } from 'node:os';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { DEFAULT_PROGRAM_FILE } from './package-root.js';

/**
 * Engine settings, from environment variables (LOYALTY_*). One strict schema,
 * units last in every name, every limit bounded; parsed once and frozen.
 */

/** A whole number from the environment (a string) or from code; an empty variable is an error, not 0. */
const integer = (min: number, max: number) =>
  z
    .union([z.number(), z.string().trim().min(1, 'is empty; unset it to use the default').regex(/^-?\d+$/, 'must be a whole number')])
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
const booleanFromEnv = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');

const settingsObject = z
  .object({
    /** NATS server URL(s), comma separated. Empty: start and supervise a local nats-server. */
    natsUrl: z.string().default(''),
    natsUser: z.string().optional(),
    natsPassword: z.string().optional(),
    natsToken: z.string().optional(),
    natsCredsFile: z.string().optional(),
    natsNkeySeedFile: z.string().optional(),
    natsTlsCaFile: z.string().optional(),
    natsTlsCertFile: z.string().optional(),
    natsTlsKeyFile: z.string().optional(),
    /** Port of the embedded nats-server (only when natsUrl is empty). */
    embeddedNatsPort: integer(1, 65535).default(4222),
    /** Install nats-server with apt-get when it is missing and we are root. */
    embeddedNatsAutoInstall: booleanFromEnv.default(true),
    dataDir: z.string().min(1).default('./data'),
    /** Default: the retail sample shipped in the package (config/programs/retail.yaml), wherever the engine runs from. */
    programFile: z.string().min(1).default(DEFAULT_PROGRAM_FILE),
    /** Fixed when a data directory is created; a different value later refuses to start. */
    partitions: integer(1, 4096).default(64),
    /** Actor threads; default one per core, at most one per partition. */
    actors: integer(1, 4096).optional(),
    streamName: z.string().regex(/^[A-Za-z0-9_-]+$/).default('LOYALTY_TX'),
    subjectPrefix: z.string().regex(/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/).default('loyalty'),
    consumerName: z.string().regex(/^[A-Za-z0-9_-]+$/).default('loyalty-engine'),
    /**
     * This instance's name where instances answer side by side: its KPI
     * scatter replies, its KPI holder key, the Loyalty-Instance header of its
     * partition wallet reads. Unset: the host name, its other characters made
     * "-" (instanceIdOf).
     */
    instanceId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
    /** KV bucket (no TTL) where each instance records, before its first KPI commit, that it holds KPI counters: an aggregate's expected set. */
    kpiHoldersBucket: z.string().regex(/^[A-Za-z0-9_-]+$/).default('LOYALTY_KPI_HOLDERS'),
    /**
     * Cluster mode (docs/cluster.md): several instances share the partitions
     * under leases, each partition consumed by its own durable consumer on
     * `<prefix>.txp.<p>.*` and committed through its changelog. Needs a NATS
     * URL whose servers map `<prefix>.tx.*` to partitions. Off: one instance
     * owns everything (the default).
     */
    cluster: booleanFromEnv.default(false),
    /** Cluster mode: an unrenewed lease expires after this; on a 3-node cluster above a leader election (~6 s on 2.9.10). */
    clusterLeaseTtlMs: integer(1_000, 600_000).default(10_000),
    /** Cluster mode: how often to heartbeat, renew and rebalance; at most a third of the lease TTL. */
    clusterTickMs: integer(100, 200_000).default(2_000),
    /** Cluster mode: replicas of the transaction stream, the changelog, the snapshots and the lease buckets (1 on one server, 3 on a cluster). */
    clusterReplicas: z.union([z.literal('1'), z.literal('3'), z.literal('5'), z.literal(1), z.literal(3), z.literal(5)]).transform(Number).default(1),
    /** Cluster mode: the stream of the partitions' changelogs (the commit point). */
    changelogStreamName: z.string().regex(/^[A-Za-z0-9_-]+$/).default('LOYALTY_CHANGELOG'),
    /** Cluster mode: the object store bucket of the partitions' snapshots. */
    snapshotBucket: z.string().regex(/^[A-Za-z0-9_-]+$/).default('LOYALTY_SNAPSHOTS'),
    /**
     * Cluster mode: a partition is snapshotted (and its changelog compacted)
     * once this many records or bytes were appended since its last snapshot,
     * at most once per interval: a new owner then replays at most about that
     * much (src/cluster/snapshot-schedule.ts).
     */
    snapshotRecordsMin: integer(1, 10_000_000).default(2_000),
    snapshotBytesMin: integer(4_096, 1024 * 1024 * 1024).default(16 * 1024 * 1024),
    snapshotIntervalMsMin: integer(0, 86_400_000).default(30_000),
    /** Cluster mode: KV buckets of the partition leases and of the live instances (both with the lease TTL). */
    leasesBucket: z.string().regex(/^[A-Za-z0-9_-]+$/).default('LOYALTY_LEASES'),
    instancesBucket: z.string().regex(/^[A-Za-z0-9_-]+$/).default('LOYALTY_INSTANCES'),
    /** Cluster mode: KV bucket (no TTL) of the promotions' global budgets, one counter per promotion of what the instances reserved (src/cluster/budget-reservations.ts). */
    budgetsBucket: z.string().regex(/^[A-Za-z0-9_-]+$/).default('LOYALTY_BUDGETS'),
    /**
     * Cluster mode: a promotion's global budget is reserved in chunks of
     * 1/this of it (at least 1), or more when the instance draws faster; an
     * instance holds less than two chunks unspent.
     */
    clusterBudgetChunks: integer(1, 1_000_000).default(100),
    /** Cluster mode: KV bucket of the program activated through the API, one key every instance watches (src/cluster/program-sync.ts). */
    programsBucket: z.string().regex(/^[A-Za-z0-9_-]+$/).default('LOYALTY_PROGRAMS'),
    deadLetterStreamName: z.string().regex(/^[A-Za-z0-9_-]+$/).default('LOYALTY_DLQ'),
    outcomeStreamName: z.string().regex(/^[A-Za-z0-9_-]+$/).default('LOYALTY_OUTCOMES'),
    /**
     * How long the outcome stream may take to acknowledge (PubAck) a batch's
     * outcome messages; past it the batch is published again (same message
     * ids) and its outbox entry stays until the stream has them all.
     */
    outcomePublishTimeoutMs: integer(100, 600_000).default(10_000),
    /** Outcome batches per actor not yet acknowledged by the outcome stream before the actor takes no new batch. */
    outcomeBatchesUnconfirmedMax: integer(1, 4096).default(64),
    /** Events per actor batch, and how long a partial batch may wait. */
    batchSizeMax: integer(1, 65_536).default(1024),
    batchAgeMsMax: integer(0, 10_000).default(4),
    /** Batches queued or running per actor before intake waits. */
    actorBatchesInFlightMax: integer(1, 64).default(4),
    /** Delivered but unacked messages; nats-server stops delivering at this bound. */
    ackPendingMax: integer(1, 1_000_000).default(32_768),
    ackWaitMs: integer(1_000, 3_600_000).default(60_000),
    /**
     * Bytes one pull request may bring (subjects, headers and payloads, as
     * nats-server counts them), besides its count bound of
     * min(ackPendingMax, 8192) messages. nats-server cuts a client whose
     * unsent data passes its max_pending (64 MiB by default) as a slow
     * consumer, so keep it well below that; at start it must hold the
     * server's max_payload plus 64 KiB (the embedded server's is 8 MiB).
     */
    pullBytesMax: integer(1024 * 1024, 256 * 1024 * 1024).default(16 * 1024 * 1024),
    /** Payloads larger than this go to the dead-letter stream unread. */
    payloadBytesMax: integer(256, 8 * 1024 * 1024).default(64 * 1024),
    /**
     * Members kept in each actor's memory; the rest are read from LMDB on
     * demand. A cached member costs about 9 KB of heap with the retail
     * program (measured at 10 million members), so the default keeps both
     * actors' caches near 180 MB however many members there are. Why 10,000
     * and not 20,000: at 10 million members the engine's private memory was
     * 1,023–1,073 MiB with 20,000 (over the 1 GiB budget) and 841–858 MiB
     * with 10,000, at the same rate within the machine's noise; with 5,000
     * at 100,000 members neither rate nor CPU per event moved (bench, 7 Dec).
     */
    memberCacheMax: integer(1_000, 50_000_000).default(10_000),
    /**
     * Each actor thread's V8 old-generation limit. V8 otherwise sizes it from
     * the machine's memory and lets garbage pile up far beyond the live cache;
     * a bound makes it collect sooner. An actor that needs more stops the
     * engine (out of memory), so keep it well above the cache's size.
     */
    actorHeapMaxMb: integer(128, 65_536).default(384),
    /**
     * Added to each actor thread's nice value (Linux; 0, the default, leaves
     * them at the engine's priority). When the cores are all busy, the API
     * thread, the main thread and nats-server run first and the actors catch
     * up from the stream: more API throughput beside consumption, less
     * consumption capacity. See src/actors/priority.ts for the figures.
     */
    actorNice: integer(0, 19).default(0),
    /** LMDB map size; the file grows up to it. */
    lmdbMapSizeBytes: integer(64 * 1024 * 1024, 2 ** 40).default(64 * 1024 ** 3),
    /**
     * API bearer tokens with roles, "role:token" pairs separated by commas
     * (roles: read, write, admin; admin implies write implies read). Prefer
     * apiTokensFile in production: environment variables leak into process lists.
     */
    apiTokens: z.string().default(''),
    /** A file of "role:token" lines (# comments allowed). */
    apiTokensFile: z.string().optional(),
    /** Largest accepted HTTP request body (bulk files included). */
    httpBodyBytesMax: integer(1024, 512 * 1024 * 1024).default(32 * 1024 * 1024),
    /**
     * Bytes of rendered wallets the API thread keeps (estimated: the records
     * each was rendered from, for comparison, plus its body); the oldest go
     * first past it. 0 renders every read afresh.
     */
    walletCacheBytesMax: integer(0, 4 * 1024 * 1024 * 1024).default(32 * 1024 * 1024),
    /** How often each actor sweeps the members whose due time has come, one chunk at most (expiry, pending release, tier review). */
    sweepIntervalMs: integer(100, 86_400_000).default(1_000),
    /** Members one sweep chunk reads at most; a re-indexing walk after a program change takes M / (actors × chunk) intervals. */
    sweepChunkMembers: integer(1, 1_000_000).default(2_000),
    httpHost: z.string().default('127.0.0.1'),
    httpPort: integer(0, 65535).default(8080),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** 'auto': human-readable when stdout is a terminal, JSON lines otherwise. */
    logFormat: z.enum(['auto', 'json', 'pretty']).default('auto'),
    shutdownTimeoutMs: integer(100, 600_000).default(30_000),
  })
  .strict();

export const settingsSchema = settingsObject.superRefine((settings, context) => {
    if (settings.natsTlsCertFile !== undefined && settings.natsTlsKeyFile === undefined) {
      context.addIssue({ code: 'custom', path: ['natsTlsKeyFile'], message: 'required when natsTlsCertFile is set' });
    }
    if (settings.natsUser !== undefined && settings.natsPassword === undefined) {
      context.addIssue({ code: 'custom', path: ['natsPassword'], message: 'required when natsUser is set' });
    }
    if (settings.actors !== undefined && settings.actors > settings.partitions) {
      context.addIssue({ code: 'custom', path: ['actors'], message: `must not exceed partitions (${settings.partitions})` });
    }
    if (settings.cluster && settings.natsUrl === '') {
      context.addIssue({ code: 'custom', path: ['natsUrl'], message: 'required when cluster is true: the servers must map <prefix>.tx.* to partitions (docs/cluster.md), which the embedded nats-server does not' });
    }
    if (settings.cluster && settings.clusterTickMs * 3 > settings.clusterLeaseTtlMs) {
      context.addIssue({ code: 'custom', path: ['clusterTickMs'], message: `must be at most a third of clusterLeaseTtlMs (${settings.clusterLeaseTtlMs})` });
    }
    if (settings.batchSizeMax > settings.ackPendingMax) {
      context.addIssue({ code: 'custom', path: ['batchSizeMax'], message: `must not exceed ackPendingMax (${settings.ackPendingMax})` });
    }
  });

export type Settings = Readonly<Omit<z.infer<typeof settingsSchema>, 'actors'> & { actors: number }>;

/** Read by the CLI's client commands (member, adjust, report), not by the engine: allowed beside its settings. */
const CLIENT_VARIABLES = new Set(['LOYALTY_API_URL', 'LOYALTY_API_TOKEN']);

/** The instance's name (settings.instanceId), or the host name made one: A-Z a-z 0-9 _ - only, at most 64. */
export function instanceIdOf(settings: Pick<Settings, 'instanceId'>, host: string = hostname()): string {
  return settings.instanceId ?? (host.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64) || 'loyalty');
}

/** camelCase key → LOYALTY_SNAKE_CASE environment variable. */
export function envNameOf(key: string): string {
  return `LOYALTY_${key.replace(/([A-Z])/g, '_$1').toUpperCase()}`;
}

const keys = Object.keys(settingsObject.shape);

/**
 * Reads LOYALTY_* variables. An unknown LOYALTY_ variable is an error too: a
 * typo must not silently fall back to a default.
 */
export function loadSettings(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Record<string, unknown>> = {}): Settings {
  const known = new Map(keys.map((key) => [envNameOf(key), key]));
  const input: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('LOYALTY_') || value === undefined || CLIENT_VARIABLES.has(name)) continue;
    const key = known.get(name);
    if (key === undefined) {
      problems.push(`${name}: unknown setting`);
      continue;
    }
    input[key] = value;
  }
  Object.assign(input, overrides);
  const parsed = settingsSchema.safeParse(input);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = String(issue.path[0] ?? '(root)');
      problems.push(`${envNameOf(key)} (${key}): ${issue.message}`);
    }
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError('settings', problems);
  const actors = parsed.data.actors ?? Math.min(availableParallelism(), parsed.data.partitions);
  // Resolved here, on the main thread: the API thread's stdout is never a terminal.
  const logFormat = parsed.data.logFormat === 'auto' ? (process.stdout.isTTY === true ? 'pretty' : 'json') : parsed.data.logFormat;
  return Object.freeze({ ...parsed.data, actors, logFormat });
}
