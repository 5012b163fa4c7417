import { errors as natsErrors, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { ServiceErrorCodeHeader, ServiceErrorHeader } from '@nats-io/services';
import { assert } from '../domain/assert.js';
import { memberIdSchema } from '../domain/events.js';
import { LEDGER_KINDS } from '../domain/state.js';
import { partitionOf } from '../routing/partitioner.js';
import { HEADER_ERROR_CODE } from '../transport/services.js';

/**
 * Wallet reads routed to the partition's owner (issue 17). With several
 * instances each holding only the partitions it owns, a wallet can be read
 * only where its partition lives, so every partition has its own subject:
 *   <prefix>.svc.wallet.p<N>   {"memberId": "ann"}   → wallet JSON (as <prefix>.svc.wallet)
 *                              {"memberId": "ann", "ledger": {"afterSeq", "limit", "kinds"?, "fromMs"?, "toMs"?}}
 *                                                   → a ledger page's JSON (as GET /v1/members/ann/ledger), header Loyalty-Read: ledger
 * The owner subscribes to it when it has won the partition and restored its
 * state (own), and drains the subscription before handing it over (release).
 * A plain subscription, no queue group: exactly one instance answers, and
 * between two owners nobody does, which NATS tells the requester at once
 * (503 no responders). The router waits that out with a bounded backoff.
 *
 * Not the services framework: its endpoints cannot be removed (a stopped
 * endpoint subscription stops the whole service), and a partition comes and
 * goes with its lease. Replies carry the same error headers as
 * src/transport/services.ts (Nats-Service-Error-Code, Nats-Service-Error,
 * Loyalty-Error-Code) and a body `{ "error": { "code", "message" } }`.
 *
 * The codes are the wire's, like the API's (src/api/errors.ts), with an
 * HTTP-like number each; the router throws them as WalletRoutingError.
 */

export const WALLET_ROUTING_CODES = {
  /** The request is not {"memberId": "<member id>"}, or too large. */
  VALIDATION_FAILED: 400,
  /** The owner does not know the member. */
  MEMBER_NOT_FOUND: 404,
  /** The member's partition is not the subject's: the sender computed it wrongly (or with another partition count). */
  WRONG_PARTITION: 421,
  /** The owner's read failed. */
  INTERNAL_ERROR: 500,
  /** An instance still subscribed no longer holds the partition (its lease ran out): the router retries. */
  PARTITION_NOT_OWNED: 503,
  /** The owner has too many reads in flight: not retried, so load is not multiplied. */
  OVERLOADED: 503,
  /** Router: nobody answered the partition's subject for handoverWaitMs (between owners longer than that, or no instance holds it). */
  PARTITION_UNAVAILABLE: 503,
  /** Router: an owner is subscribed but did not answer within requestTimeoutMs (paused or overloaded); not retried. */
  PARTITION_TIMEOUT: 504,
  /** Router: the request could not be sent (connection closed or draining). */
  REQUEST_FAILED: 503,
} as const;

export type WalletRoutingCode = keyof typeof WALLET_ROUTING_CODES;

export class WalletRoutingError extends Error {
  readonly status: number;
  constructor(
    readonly code: WalletRoutingCode,
    message: string,
    readonly partition: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'WalletRoutingError';
    this.status = WALLET_ROUTING_CODES[code];
  }
}

/** Which instance answered: for logs and the tests that check the owner answered. */
export const HEADER_INSTANCE = 'Loyalty-Instance';
/**
 * On a ledger page's reply: what was read. An instance that predates ledger
 * reads takes {"memberId", "ledger"} for a wallet request and answers the
 * wallet; without this header the router refuses that answer.
 */
export const HEADER_READ = 'Loyalty-Read';
/** A ledger page holds at most this many entries (the HTTP API asks for at most 500). */
export const LEDGER_LIMIT_MAX = 1_000;
/** Room left under the server's max_payload for the reply's headers. */
const REPLY_HEADROOM_BYTES = 4_096;
const MAX_PAYLOAD_DEFAULT = 1024 * 1024;
/** A partition count's subjects are p0..p(P-1); as LOYALTY_PARTITIONS allows. */
export const PARTITIONS_MAX = 4096;
/** {"memberId": <64 chars>} is under 100 bytes, with a ledger query of every kind under 400; anything much larger is not a request of ours. */
const REQUEST_BYTES_MAX = 1024;

export function walletSubject(prefix: string, partition: number): string {
  return `${prefix}.svc.wallet.p${partition}`;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---- the owner's side ----

/** The wallet JSON text of a member (walletJson(walletResponse(...))), or undefined when the member is not known. */
export type WalletReader = (memberId: string, partition: number) => string | undefined | Promise<string | undefined>;

/** A ledger page asked for: src/api/context.ts LedgerQuery, checked. */
export interface LedgerRequest {
  /** Entries after this sequence number (the cursor's); 0 = from the start. */
  readonly afterSeq: number;
  /** 1..LEDGER_LIMIT_MAX. */
  readonly limit: number;
  /** Only these entry kinds (LEDGER_KINDS), if given. */
  readonly kinds?: readonly string[];
  /** Event time, inclusive start and exclusive end (ms). */
  readonly fromMs?: number;
  readonly toMs?: number;
}

/**
 * A ledger page's JSON text ({"memberId", "entries", "nextCursor"}, as the
 * HTTP API writes it), or undefined when the member is not known. The text
 * must be at most `bytesMax` bytes of UTF-8 (the connection's max_payload less
 * room for headers): a page that would be larger is cut short, its nextCursor
 * after the last entry kept.
 */
export type LedgerReader = (memberId: string, partition: number, query: LedgerRequest, bytesMax: number) => string | undefined | Promise<string | undefined>;

export interface PartitionWalletServerOptions {
  readonly instanceId: string;
  readonly partitions: number;
  /** settings.subjectPrefix; default "loyalty". */
  readonly subjectPrefix?: string;
  readonly read: WalletReader;
  /** Ledger pages, on the same subject. Without it a ledger request is refused (VALIDATION_FAILED). */
  readonly readLedger?: LedgerReader;
  /**
   * Checked on every request before reading, e.g. `(p) => ownership.holds(p)`:
   * an instance still subscribed after its lease's validity ran out (paused
   * past its TTL, not yet told) answers PARTITION_NOT_OWNED and unsubscribes,
   * so it never serves a partition someone else may be writing.
   */
  readonly holds?: (partition: number) => boolean;
  /** Bound on asynchronous reads in flight over all partitions; beyond, OVERLOADED. Default 1,000. */
  readonly readsInFlightMax?: number;
  /** Called with a failure the server could not answer with (a reply that could not be sent, a drain that failed). */
  readonly onError?: (error: unknown, partition: number) => void;
}

interface Served {
  readonly subscription: Subscription;
  /** Asynchronous reads not answered yet: release waits for them. */
  readonly inFlight: Set<Promise<void>>;
  /** Set once release began: requests still delivered are answered, nothing is re-subscribed. */
  releasing: Promise<void> | undefined;
}

export class PartitionWalletServer {
  private readonly served = new Map<number, Served>();
  /** Releases under way, so an own() right after a release() waits for the drain. */
  private readonly draining = new Map<number, Promise<void>>();
  private readonly prefix: string;
  private readonly readsInFlightMax: number;
  private readsInFlight = 0;
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: PartitionWalletServerOptions,
  ) {
    assert(Number.isInteger(options.partitions) && options.partitions >= 1 && options.partitions <= PARTITIONS_MAX, `partitions must be an integer from 1 to ${PARTITIONS_MAX}`);
    assert(/^[A-Za-z0-9_-]{1,64}$/.test(options.instanceId), 'an instance id is 1-64 of A-Z a-z 0-9 _ -');
    this.prefix = options.subjectPrefix ?? 'loyalty';
    assert(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(this.prefix), 'the subject prefix is dot-separated tokens without wildcards');
    this.readsInFlightMax = options.readsInFlightMax ?? 1_000;
    assert(Number.isInteger(this.readsInFlightMax) && this.readsInFlightMax >= 1, 'readsInFlightMax must be a positive integer');
  }

  /** The partitions answered now (not those being released). */
  owned(): number[] {
    return [...this.served].filter(([, served]) => served.releasing === undefined).map(([partition]) => partition).sort((a, b) => a - b);
  }

  /**
   * Answer the partition's wallet reads from now on: call it once the
   * partition is won and its state restored (OwnershipHandlers.onAcquired).
   * Resolves once the server has the subscription (a flush), so a request
   * sent after it is answered by this instance.
   */
  async own(partition: number): Promise<void> {
    this.checkPartition(partition);
    assert(!this.closed, 'the wallet server is closed');
    await this.draining.get(partition); // released a moment ago: its old subscription is gone first
    assert(!this.served.has(partition), `partition ${partition} is already served by this instance`);
    const served: Served = {
      subscription: this.nc.subscribe(walletSubject(this.prefix, partition), {
        callback: (error, message) => {
          if (error === null) this.onRequest(partition, served, message);
          else this.options.onError?.(error, partition);
        },
      }),
      inFlight: new Set(),
      releasing: undefined,
    };
    this.served.set(partition, served);
    await this.nc.flush();
  }

  /**
   * Stop answering the partition: call it before handing it over
   * (OwnershipHandlers.onReleasing, and onLost). Resolves when the server no
   * longer delivers the subject to this instance and every request delivered
   * before has been answered (a subscription drain, then the reads in
   * flight). Requests sent after it get no responders, until the next owner
   * subscribes. Releasing a partition not served is a no-op.
   */
  release(partition: number): Promise<void> {
    this.checkPartition(partition);
    const served = this.served.get(partition);
    if (served === undefined) return this.draining.get(partition) ?? Promise.resolve();
    served.releasing ??= (async () => {
      try {
        await served.subscription.drain();
      } catch (error) {
        // A closed connection has no subscription left to drain.
        if (!this.nc.isClosed()) this.options.onError?.(error, partition);
      }
      await Promise.allSettled([...served.inFlight]);
    })().finally(() => {
      this.served.delete(partition);
      this.draining.delete(partition);
    });
    this.draining.set(partition, served.releasing);
    return served.releasing;
  }

  /** Release every partition (a graceful stop). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.served.keys()].map((partition) => this.release(partition)));
  }

  private checkPartition(partition: number): void {
    assert(Number.isInteger(partition) && partition >= 0 && partition < this.options.partitions, `partition ${partition} is not in 0..${this.options.partitions - 1}`);
  }

  private onRequest(partition: number, served: Served, message: Msg): void {
    if (message.reply === undefined || message.reply === '') return; // a publish, not a request: nobody to answer
    if (this.options.holds !== undefined && !this.options.holds(partition)) {
      this.respondError(message, partition, 'PARTITION_NOT_OWNED', `instance ${this.options.instanceId} no longer holds partition ${partition}`);
      void this.release(partition);
      return;
    }
    const request = this.requestOf(message);
    if (typeof request === 'string') {
      this.respondError(message, partition, 'VALIDATION_FAILED', request);
      return;
    }
    const { memberId, ledger } = request;
    const memberPartition = partitionOf(memberId, this.options.partitions);
    if (memberPartition !== partition) {
      this.respondError(
        message,
        partition,
        'WRONG_PARTITION',
        `member ${memberId} is in partition ${memberPartition} of ${this.options.partitions}, not ${partition}: send it to ${walletSubject(this.prefix, memberPartition)}`,
      );
      return;
    }
    const readLedger = this.options.readLedger;
    if (ledger !== undefined && readLedger === undefined) {
      this.respondError(message, partition, 'VALIDATION_FAILED', `instance ${this.options.instanceId} does not serve ledger reads`);
      return;
    }
    let result: string | undefined | Promise<string | undefined>;
    try {
      result = ledger === undefined ? this.options.read(memberId, partition) : readLedger!(memberId, partition, ledger, this.payloadBytesMax() - REPLY_HEADROOM_BYTES);
    } catch (failure) {
      this.respondError(message, partition, 'INTERNAL_ERROR', (failure as Error)?.message ?? String(failure));
      return;
    }
    const kind = ledger === undefined ? 'wallet' : 'ledger';
    if (typeof result === 'string' || result === undefined) {
      this.respondRead(message, partition, memberId, kind, result);
      return;
    }
    if (this.readsInFlight >= this.readsInFlightMax) {
      this.respondError(message, partition, 'OVERLOADED', `instance ${this.options.instanceId} has ${this.readsInFlight} wallet reads in flight`);
      return;
    }
    this.readsInFlight += 1;
    const pending: Promise<void> = result.then(
      (text) => this.respondRead(message, partition, memberId, kind, text),
      (failure: unknown) => this.respondError(message, partition, 'INTERNAL_ERROR', (failure as Error)?.message ?? String(failure)),
    ).finally(() => {
      this.readsInFlight -= 1;
      served.inFlight.delete(pending);
    });
    served.inFlight.add(pending);
  }

  /** The request, or what is wrong with it. */
  private requestOf(message: Msg): { readonly memberId: string; readonly ledger: LedgerRequest | undefined } | string {
    const expected = 'request must be {"memberId": "<member id>"} or {"memberId", "ledger": {"afterSeq", "limit", "kinds"?, "fromMs"?, "toMs"?}}';
    if (message.data.length > REQUEST_BYTES_MAX) return `${expected}, at most ${REQUEST_BYTES_MAX} bytes`;
    let body: unknown;
    try {
      body = JSON.parse(decoder.decode(message.data));
    } catch {
      return expected;
    }
    const parsed = memberIdSchema.safeParse((body as { memberId?: unknown } | null)?.memberId);
    if (!parsed.success) return expected;
    const ledger = (body as { ledger?: unknown }).ledger;
    if (ledger === undefined) return { memberId: parsed.data, ledger: undefined };
    const problem = ledgerRequestProblem(ledger);
    return problem === undefined ? { memberId: parsed.data, ledger: ledger as LedgerRequest } : `ledger: ${problem}`;
  }

  private payloadBytesMax(): number {
    return this.nc.info?.max_payload ?? MAX_PAYLOAD_DEFAULT;
  }

  private respondRead(message: Msg, partition: number, memberId: string, kind: 'wallet' | 'ledger', text: string | undefined): void {
    if (text === undefined) {
      this.respondError(message, partition, 'MEMBER_NOT_FOUND', `member ${memberId} is not known`);
      return;
    }
    const body = encoder.encode(text);
    // Refused here, with a reason, rather than by the client library (the requester would only time out).
    if (body.length > this.payloadBytesMax() - REPLY_HEADROOM_BYTES) {
      this.respondError(message, partition, 'INTERNAL_ERROR', `the ${kind} of member ${memberId} is ${body.length} bytes, more than max_payload (${this.payloadBytesMax()}) allows`);
      return;
    }
    const headers = natsHeaders();
    headers.set(HEADER_INSTANCE, this.options.instanceId);
    if (kind === 'ledger') headers.set(HEADER_READ, kind);
    this.respond(message, partition, body, headers);
  }

  private respondError(message: Msg, partition: number, code: WalletRoutingCode, text: string): void {
    const headers = natsHeaders();
    headers.set(ServiceErrorCodeHeader, String(WALLET_ROUTING_CODES[code]));
    headers.set(ServiceErrorHeader, `${code}: ${text}`);
    headers.set(HEADER_ERROR_CODE, code);
    headers.set(HEADER_INSTANCE, this.options.instanceId);
    this.respond(message, partition, encoder.encode(JSON.stringify({ error: { code, message: text } })), headers);
  }

  private respond(message: Msg, partition: number, body: Uint8Array, headers: MsgHdrs): void {
    try {
      message.respond(body, { headers });
    } catch (error) {
      this.options.onError?.(error, partition); // the connection closed under us: the requester times out
    }
  }
}

const LEDGER_REQUEST_KEYS = new Set(['afterSeq', 'limit', 'kinds', 'fromMs', 'toMs']);
const LEDGER_KIND_SET: ReadonlySet<string> = new Set(LEDGER_KINDS);

/** What is wrong with a ledger request, or undefined when it is one. */
function ledgerRequestProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'must be an object';
  const request = value as Record<string, unknown>;
  const unknown = Object.keys(request).filter((key) => !LEDGER_REQUEST_KEYS.has(key));
  if (unknown.length > 0) return `unknown fields ${unknown.join(', ')}`;
  const { afterSeq, limit, kinds, fromMs, toMs } = request;
  if (!Number.isSafeInteger(afterSeq) || (afterSeq as number) < 0) return 'afterSeq must be an integer ≥ 0';
  if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > LEDGER_LIMIT_MAX) return `limit must be an integer from 1 to ${LEDGER_LIMIT_MAX}`;
  if (kinds !== undefined) {
    if (!Array.isArray(kinds) || kinds.length > LEDGER_KINDS.length) return `kinds must be a list of at most ${LEDGER_KINDS.length} ledger kinds`;
    const bad = kinds.find((kind) => typeof kind !== 'string' || !LEDGER_KIND_SET.has(kind));
    if (bad !== undefined) return `kinds: ${JSON.stringify(bad)} is not a ledger kind`;
  }
  if (fromMs !== undefined && !Number.isSafeInteger(fromMs)) return 'fromMs must be an integer (ms)';
  if (toMs !== undefined && !Number.isSafeInteger(toMs)) return 'toMs must be an integer (ms)';
  return undefined;
}

// ---- the client's side ----

export interface WalletRouterOptions {
  readonly partitions: number;
  /** settings.subjectPrefix; default "loyalty". */
  readonly subjectPrefix?: string;
  /** One request's wait for its answer. Default 1,000 ms, at most 30 s. */
  readonly requestTimeoutMs?: number;
  /**
   * How long to keep asking while nobody answers the partition (a handover:
   * the old owner released, the new one has not subscribed yet). Default
   * 5,000 ms, at most 60 s. A read fails after at most handoverWaitMs +
   * requestTimeoutMs.
   */
  readonly handoverWaitMs?: number;
  /** Backoff between attempts: doubling from the first to the cap, each with ±25 % jitter. Default 10 and 200 ms. */
  readonly retryDelayFirstMs?: number;
  readonly retryDelayMaxMs?: number;
}

export interface WalletReply {
  /** The wallet (or ledger page) JSON text, as the owner wrote it. */
  readonly json: string;
  readonly partition: number;
  /** The instance that answered (its Loyalty-Instance header). */
  readonly servedBy: string | undefined;
  /** Requests sent: 1 unless the partition was between owners. */
  readonly attempts: number;
  /** From the first request to the answer. */
  readonly elapsedMs: number;
}

export interface WalletRouterStats {
  readonly reads: number;
  /** Attempts that found nobody (or an instance that no longer held the partition) and were sent again. */
  readonly retries: number;
  readonly unavailable: number;
  /** The longest a read that succeeded waited for a partition between owners. */
  readonly longestWaitMs: number;
}

/** Attempts in one read, whatever the delays: a bound of its own, should the clock misbehave. */
const ATTEMPTS_MAX = 1_000;

export class WalletRouter {
  private readonly prefix: string;
  private readonly requestTimeoutMs: number;
  private readonly handoverWaitMs: number;
  private readonly retryDelayFirstMs: number;
  private readonly retryDelayMaxMs: number;
  private counters = { reads: 0, retries: 0, unavailable: 0, longestWaitMs: 0 };

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: WalletRouterOptions,
  ) {
    assert(Number.isInteger(options.partitions) && options.partitions >= 1 && options.partitions <= PARTITIONS_MAX, `partitions must be an integer from 1 to ${PARTITIONS_MAX}`);
    this.prefix = options.subjectPrefix ?? 'loyalty';
    assert(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(this.prefix), 'the subject prefix is dot-separated tokens without wildcards');
    this.requestTimeoutMs = options.requestTimeoutMs ?? 1_000;
    this.handoverWaitMs = options.handoverWaitMs ?? 5_000;
    this.retryDelayFirstMs = options.retryDelayFirstMs ?? 10;
    this.retryDelayMaxMs = options.retryDelayMaxMs ?? 200;
    assert(Number.isInteger(this.requestTimeoutMs) && this.requestTimeoutMs >= 1 && this.requestTimeoutMs <= 30_000, 'requestTimeoutMs must be an integer from 1 to 30,000');
    assert(Number.isInteger(this.handoverWaitMs) && this.handoverWaitMs >= 0 && this.handoverWaitMs <= 60_000, 'handoverWaitMs must be an integer from 0 to 60,000');
    assert(
      Number.isInteger(this.retryDelayFirstMs) && this.retryDelayFirstMs >= 1 && this.retryDelayMaxMs >= this.retryDelayFirstMs && this.retryDelayMaxMs <= 5_000,
      'retry delays must be integers with 1 ≤ first ≤ max ≤ 5,000',
    );
  }

  stats(): WalletRouterStats {
    return { ...this.counters };
  }

  /** The member's wallet JSON text, from its partition's owner. Throws WalletRoutingError. */
  async wallet(memberId: string): Promise<string> {
    return (await this.walletReply(memberId)).json;
  }

  walletReply(memberId: string): Promise<WalletReply> {
    return this.read(memberId, undefined);
  }

  /** A page of the member's ledger as JSON text ({"memberId", "entries", "nextCursor"}), from its partition's owner. Throws WalletRoutingError. */
  async ledger(memberId: string, query: LedgerRequest): Promise<string> {
    return (await this.ledgerReply(memberId, query)).json;
  }

  ledgerReply(memberId: string, query: LedgerRequest): Promise<WalletReply> {
    return this.read(memberId, query);
  }

  private async read(memberId: string, ledger: LedgerRequest | undefined): Promise<WalletReply> {
    const parsed = memberIdSchema.safeParse(memberId);
    if (!parsed.success) throw new WalletRoutingError('VALIDATION_FAILED', `not a member id: ${JSON.stringify(String(memberId).slice(0, 80))}`, undefined);
    const partition = partitionOf(parsed.data, this.options.partitions);
    const subject = walletSubject(this.prefix, partition);
    const payload = encoder.encode(JSON.stringify(ledger === undefined ? { memberId: parsed.data } : { memberId: parsed.data, ledger: ledgerRequestOf(ledger) }));
    this.counters.reads += 1;
    const startedAt = Date.now();
    const deadline = startedAt + this.handoverWaitMs;
    let delayMs = this.retryDelayFirstMs;
    let lastRefusal = 'no instance is subscribed to it';
    for (let attempt = 1; attempt <= ATTEMPTS_MAX; attempt++) {
      let message: Msg | undefined = undefined;
      try {
        message = await this.nc.request(subject, payload, { timeout: this.requestTimeoutMs });
      } catch (error) {
        if (!isNoResponders(error)) throw this.failure(error, partition, subject);
      }
      if (message !== undefined) {
        const code = message.headers?.get(HEADER_ERROR_CODE) ?? '';
        const serviceStatus = message.headers?.get(ServiceErrorCodeHeader) ?? '';
        const servedBy = message.headers?.get(HEADER_INSTANCE) || undefined;
        if (code === '' && serviceStatus === '') {
          if (ledger !== undefined && message.headers?.get(HEADER_READ) !== 'ledger') {
            throw new WalletRoutingError(
              'INTERNAL_ERROR',
              `partition ${partition} (instance ${servedBy ?? '?'}): answered a ledger read without ${HEADER_READ}: ledger (a version that serves wallets only?)`,
              partition,
            );
          }
          const elapsedMs = Date.now() - startedAt;
          if (attempt > 1) this.counters.longestWaitMs = Math.max(this.counters.longestWaitMs, elapsedMs);
          return { json: decoder.decode(message.data), partition, servedBy, attempts: attempt, elapsedMs };
        }
        if (code !== 'PARTITION_NOT_OWNED') throw replyError(code, message, partition, servedBy);
        lastRefusal = `instance ${servedBy ?? '?'} answered that it no longer holds it`;
      }
      // Between owners: ask again after a backoff, until the handover wait is spent.
      const now = Date.now();
      if (now >= deadline) break;
      this.counters.retries += 1;
      const jittered = Math.round(delayMs * (0.75 + Math.random() * 0.5));
      await sleep(Math.min(jittered, deadline - now));
      delayMs = Math.min(this.retryDelayMaxMs, delayMs * 2);
    }
    this.counters.unavailable += 1;
    throw new WalletRoutingError(
      'PARTITION_UNAVAILABLE',
      `partition ${partition} (${subject}) had no owner answering for ${Date.now() - startedAt} ms (handoverWaitMs ${this.handoverWaitMs}): ${lastRefusal}; a handover taking longer, or no instance holds the partition`,
      partition,
    );
  }

  private failure(error: unknown, partition: number, subject: string): WalletRoutingError {
    if (error instanceof natsErrors.TimeoutError) {
      return new WalletRoutingError('PARTITION_TIMEOUT', `partition ${partition} (${subject}): its owner did not answer within ${this.requestTimeoutMs} ms`, partition, { cause: error });
    }
    return new WalletRoutingError('REQUEST_FAILED', `partition ${partition} (${subject}): ${(error as Error)?.message ?? String(error)}`, partition, { cause: error });
  }
}

/** Only the fields of a ledger request, none undefined (a caller's object may carry more). */
function ledgerRequestOf(query: LedgerRequest): LedgerRequest {
  return {
    afterSeq: query.afterSeq,
    limit: query.limit,
    ...(query.kinds !== undefined ? { kinds: query.kinds } : {}),
    ...(query.fromMs !== undefined ? { fromMs: query.fromMs } : {}),
    ...(query.toMs !== undefined ? { toMs: query.toMs } : {}),
  };
}

function isNoResponders(error: unknown): boolean {
  return (error instanceof natsErrors.RequestError && error.isNoResponders()) || error instanceof natsErrors.NoRespondersError;
}

function replyError(code: string, message: Msg, partition: number, servedBy: string | undefined): WalletRoutingError {
  let text = message.headers?.get(ServiceErrorHeader) ?? code;
  try {
    text = (JSON.parse(decoder.decode(message.data)) as { error: { message: string } }).error.message;
  } catch {
    // Not our body: the header's text will do.
  }
  const known = Object.hasOwn(WALLET_ROUTING_CODES, code) ? (code as WalletRoutingCode) : 'INTERNAL_ERROR';
  return new WalletRoutingError(known, `partition ${partition}${servedBy === undefined ? '' : ` (instance ${servedBy})`}: ${text}`, partition);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}
