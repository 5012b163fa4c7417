import { readFileSync } from 'node:fs';
import { credsAuthenticator, nkeyAuthenticator, nkeys, type Authenticator } from '@nats-io/nats-core';
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { ConfigError, EngineError } from '../config/errors.js';
import type { Settings } from '../config/settings.js';

/**
 * NATS connection options from engine settings. Files (creds, nkey seed, TLS) are
 * checked here, at startup, so a wrong path is one clear error instead of a
 * client that retries an impossible handshake forever.
 */

/** Between reconnect attempts; the client adds up to the jitter. Bounded so a restarted server is found within ~1.5 s. */
export const NATS_RECONNECT_TIME_WAIT_MS = 1_000;
export const NATS_RECONNECT_JITTER_MS = 500;
export const NATS_RECONNECT_JITTER_TLS_MS = 1_000;
/** Bound on one connect handshake. */
export const NATS_CONNECT_TIMEOUT_MS = 10_000;
/** A dead server is noticed after pingInterval * maxPingOut (60 s) rather than the client's default 4 minutes. */
export const NATS_PING_INTERVAL_MS = 20_000;
export const NATS_PING_OUT_MAX = 3;

const decoder = new TextDecoder();

/** The servers of a comma-separated LOYALTY_NATS_URL; empty entries are dropped. */
export function natsServersOf(natsUrl: string): string[] {
  return natsUrl
    .split(',')
    .map((server) => server.trim())
    .filter((server) => server.length > 0);
}

/** A server URL fit for logs and errors: credentials in it are masked. */
export function redactServer(server: string): string {
  return server.replace(/^([a-z]+:\/\/)?([^@/]+)@/i, (_match, scheme: string | undefined, userInfo: string) => {
    const colon = userInfo.indexOf(':');
    // user:password → user:***; a lone token → ***.
    return `${scheme ?? ''}${colon >= 0 ? `${userInfo.slice(0, colon)}:***` : '***'}@`;
  });
}

function readSetting(path: string, setting: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read (${(error as Error).message})`;
    throw new EngineError('ERR_NATS_CREDENTIALS', `${setting}: ${what} ${path} ${reason}`, { cause: error });
  }
}

/**
 * Re-reads the file at every (re)connect so rotated credentials are picked up
 * without a restart; a file briefly missing mid-rotation keeps the last good bytes.
 */
function rereadingFile(path: string, initial: Uint8Array, transform: (bytes: Uint8Array) => Uint8Array = (bytes) => bytes): () => Uint8Array {
  let lastGood = transform(initial);
  return () => {
    try {
      lastGood = transform(readFileSync(path));
    } catch {
      // Keep lastGood: failing here would abort the reconnect instead of trying known credentials.
    }
    return lastGood;
  };
}

function credsFileAuthenticator(path: string): Authenticator {
  const bytes = readSetting(path, 'LOYALTY_NATS_CREDS_FILE', 'NATS credentials file');
  const authenticator = credsAuthenticator(rereadingFile(path, bytes));
  try {
    // Parse and sign once now: a truncated or wrong file fails at startup, not at every reconnect.
    authenticator('startup-check');
  } catch (error) {
    throw new EngineError(
      'ERR_NATS_CREDENTIALS',
      `LOYALTY_NATS_CREDS_FILE: ${path} is not a NATS credentials file (expected a USER JWT block and a USER NKEY SEED block, as written by \`nsc generate creds\`): ${(error as Error).message}`,
      { cause: error },
    );
  }
  return authenticator;
}

function trimmedSeed(bytes: Uint8Array): Uint8Array {
  return new TextEncoder().encode(decoder.decode(bytes).trim());
}

function nkeySeedFileAuthenticator(path: string): Authenticator {
  const seed = trimmedSeed(readSetting(path, 'LOYALTY_NATS_NKEY_SEED_FILE', 'nkey seed file'));
  let publicKey: string;
  try {
    publicKey = nkeys.fromSeed(seed).getPublicKey();
  } catch (error) {
    throw new EngineError('ERR_NATS_CREDENTIALS', `LOYALTY_NATS_NKEY_SEED_FILE: ${path} does not hold a valid nkey seed: ${(error as Error).message}`, { cause: error });
  }
  if (!publicKey.startsWith('U')) {
    throw new EngineError('ERR_NATS_CREDENTIALS', `LOYALTY_NATS_NKEY_SEED_FILE: ${path} holds a seed for ${publicKey.slice(0, 1)}… keys; a user seed (starting with SU) is needed`);
  }
  return nkeyAuthenticator(rereadingFile(path, seed, trimmedSeed));
}

function checkTlsFile(path: string, setting: string, what: string): string {
  // The client reads TLS files at connect time; check now so a typo is not a reconnect loop.
  readSetting(path, setting, what);
  return path;
}

/**
 * The nats.js v3 options for this engine's connections. `servers` overrides
 * settings.natsUrl, for the embedded server whose URL is known only once it runs.
 */
export function natsConnectOptions(settings: Settings, name: string, servers?: string | readonly string[]): NodeConnectionOptions {
  const list = servers === undefined ? natsServersOf(settings.natsUrl) : typeof servers === 'string' ? natsServersOf(servers) : [...servers];
  if (list.length === 0) {
    throw new ConfigError('NATS settings', ['LOYALTY_NATS_URL (natsUrl): no server given (empty means the engine starts its own; pass its URL)']);
  }
  if (settings.natsCredsFile !== undefined && settings.natsNkeySeedFile !== undefined) {
    // A creds file carries its own seed; two signers for one CONNECT is a mistake, not a fallback.
    throw new ConfigError('NATS settings', ['LOYALTY_NATS_CREDS_FILE and LOYALTY_NATS_NKEY_SEED_FILE: set one, not both']);
  }

  const options: NodeConnectionOptions = {
    servers: list,
    name,
    // nats.js otherwise builds an Error with a stack per request, 30% of the CPU on the bulk path.
    noAsyncTraces: true,
    maxReconnectAttempts: -1, // reconnect forever: the engine must outlive any server restart
    reconnectTimeWait: NATS_RECONNECT_TIME_WAIT_MS,
    reconnectJitter: NATS_RECONNECT_JITTER_MS,
    reconnectJitterTLS: NATS_RECONNECT_JITTER_TLS_MS,
    timeout: NATS_CONNECT_TIMEOUT_MS,
    pingInterval: NATS_PING_INTERVAL_MS,
    maxPingOut: NATS_PING_OUT_MAX,
  };
  if (settings.natsUser !== undefined) {
    options.user = settings.natsUser;
    options.pass = settings.natsPassword;
  }
  if (settings.natsToken !== undefined) options.token = settings.natsToken;
  if (settings.natsCredsFile !== undefined) options.authenticator = credsFileAuthenticator(settings.natsCredsFile);
  if (settings.natsNkeySeedFile !== undefined) options.authenticator = nkeySeedFileAuthenticator(settings.natsNkeySeedFile);

  const tls: NonNullable<NodeConnectionOptions['tls']> = {};
  if (settings.natsTlsCaFile !== undefined) tls.caFile = checkTlsFile(settings.natsTlsCaFile, 'LOYALTY_NATS_TLS_CA_FILE', 'TLS CA file');
  if (settings.natsTlsCertFile !== undefined) tls.certFile = checkTlsFile(settings.natsTlsCertFile, 'LOYALTY_NATS_TLS_CERT_FILE', 'TLS certificate file');
  if (settings.natsTlsKeyFile !== undefined) tls.keyFile = checkTlsFile(settings.natsTlsKeyFile, 'LOYALTY_NATS_TLS_KEY_FILE', 'TLS key file');
  if (Object.keys(tls).length > 0) options.tls = tls;
  return options;
}

/** Connects, or fails with ERR_NATS_CONNECT naming the servers tried (credentials masked). */
export async function connectNats(settings: Settings, name: string, servers?: string | readonly string[]): Promise<NatsConnection> {
  const options = natsConnectOptions(settings, name, servers);
  try {
    return await connect(options);
  } catch (error) {
    const tried = (options.servers as string[]).map(redactServer).join(', ');
    throw new EngineError('ERR_NATS_CONNECT', `cannot connect to NATS at ${tried} as "${name}": ${(error as Error).message}`, { cause: error });
  }
}

/** What the engine's NATS connection is doing, as /health reports it. */
export type NatsState = 'connected' | 'disconnected' | 'reconnecting' | 'not answering';

export interface NatsWatchOptions {
  /** How often a PING probes the server while the connection looks up (a stopped server keeps its TCP connection open). */
  readonly probeIntervalMs?: number;
  /** A PING unanswered this long means the server does not answer. */
  readonly probeTimeoutMs?: number;
  readonly onChange?: (state: NatsState, previous: NatsState) => void;
  /** After the client reconnected (to the same or another server). */
  readonly onReconnect?: (server: string) => void;
}

export const NATS_PROBE_INTERVAL_MS = 2_000;
export const NATS_PROBE_TIMEOUT_MS = 2_000;

/**
 * Follows one connection's status events and probes it with PINGs, so
 * /health can say that NATS is gone, being reconnected to, or there but not
 * answering (SIGSTOP, a hung host: TCP stays open and the client would notice
 * only after pingInterval × maxPingOut, a minute).
 */
export class NatsWatch {
  private current: NatsState = 'connected';
  private since = Date.now();
  private reconnectCount = 0;
  private lastServer = '';
  private probing = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: NatsWatchOptions = {},
  ) {}

  start(): this {
    void this.follow();
    this.timer = setInterval(() => void this.probe(), this.options.probeIntervalMs ?? NATS_PROBE_INTERVAL_MS);
    this.timer.unref();
    return this;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  get state(): NatsState {
    return this.current;
  }

  get reconnects(): number {
    return this.reconnectCount;
  }

  /** For /health: the state, since when, and what it means. */
  describe(nowMs = Date.now()): { state: NatsState; forMs: number; reconnects: number; hint?: string } {
    const forMs = nowMs - this.since;
    const base = { state: this.current, forMs, reconnects: this.reconnectCount };
    switch (this.current) {
      case 'connected':
        return base;
      case 'not answering':
        return { ...base, hint: `NATS${this.lastServer ? ` (${redactServer(this.lastServer)})` : ''} does not answer pings (stopped, overloaded or cut off); intake and acks wait, nothing is lost` };
      default:
        return { ...base, hint: 'the NATS connection is lost; the engine reconnects forever, acks nothing meanwhile, and resumes from the consumer’s ack floor' };
    }
  }

  private set(state: NatsState): void {
    if (state === this.current || this.stopped) return;
    const previous = this.current;
    this.current = state;
    this.since = Date.now();
    this.options.onChange?.(state, previous);
  }

  private async follow(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (this.stopped) return;
      switch (status.type) {
        case 'disconnect':
          this.lastServer = status.server;
          this.set('disconnected');
          break;
        case 'reconnecting':
          this.set('reconnecting');
          break;
        case 'reconnect':
          this.lastServer = status.server;
          this.reconnectCount += 1;
          this.set('connected');
          this.options.onReconnect?.(status.server);
          break;
        case 'staleConnection':
          this.set('not answering');
          break;
        default:
          break;
      }
    }
  }

  /** One PING at a time; only while the client believes it is connected. */
  private async probe(): Promise<void> {
    if (this.probing || this.stopped || this.nc.isClosed()) return;
    if (this.current !== 'connected' && this.current !== 'not answering') return;
    this.probing = true;
    const timeoutMs = this.options.probeTimeoutMs ?? NATS_PROBE_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    try {
      const answered = await Promise.race([
        this.nc.rtt().then(
          () => true,
          () => false,
        ),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
      ]);
      if (answered && this.current === 'not answering') this.set('connected');
      if (!answered && this.current === 'connected') this.set('not answering');
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      this.probing = false;
    }
  }
}
