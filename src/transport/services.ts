import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import { Svcm, type ServiceMsg } from '@nats-io/services';
import type { ApiContext, SubmitResult } from '../api/context.js';
import { ApiError } from '../api/errors.js';
import { routedReadError } from '../api/member-routing.js';
import { walletJson, walletResponse } from '../api/views.js';
import { memberIdSchema, validateEvent } from '../domain/events.js';
import { walletView } from '../domain/wallet.js';

/**
 * NATS request/reply services over the same ApiContext as HTTP, with the NATS
 * services framework ("micro"): `nats micro ls|info|stats loyalty` finds them
 * through $SRV.PING / $SRV.INFO / $SRV.STATS. Endpoints:
 *   <prefix>.svc.wallet  {"memberId": "ann"}             → wallet JSON (as GET /v1/members/ann/wallet)
 *   <prefix>.svc.submit  event JSON, or {"event": {...}, "waitMs": 5000}  → SubmitResult
 * Cluster mode (ctx.memberRouting): this instance's store holds only the
 * partitions it consumes, so a wallet request for a member of another
 * partition is answered by that partition's owner (through WalletRouter, as
 * the HTTP route is), the owner's JSON text passed on as it stands; the
 * router's failures are the HTTP route's codes (PARTITION_UNAVAILABLE,
 * OVERLOADED, PARTITION_TIMEOUT) as service errors. The queue group hands a
 * request to any instance; the answer is the owner's either way.
 * Errors carry the framework's Nats-Service-Error-Code (an HTTP-like number)
 * and Nats-Service-Error headers, our stable code in Loyalty-Error-Code, and
 * a body `{ "error": { "code", "message" } }` like the HTTP API.
 * Access control is NATS's: grant these subjects only to trusted clients
 * (docs/api.md, "NATS services"). Erase is refused here unless allowed.
 */

export const SERVICE_NAME = 'loyalty';
export const SERVICE_VERSION = '1.0.0';
export const HEADER_ERROR_CODE = 'Loyalty-Error-Code';
export const HEADER_WAIT_MS = 'Loyalty-Wait-Ms';

export interface LoyaltyServicesOptions {
  /** settings.subjectPrefix; default "loyalty". */
  readonly subjectPrefix?: string;
  /** Queue group: instances share the requests. */
  readonly queue?: string;
  /** Accept erase events on the submit endpoint (default false: erase is an admin act, use the HTTP API). */
  readonly allowErase?: boolean;
  /** Bound on a submit's wait. */
  readonly waitMsMax?: number;
}

export interface LoyaltyServices {
  /** The service instance id (as `nats micro ls` shows it). */
  readonly id: string;
  stop(): Promise<void>;
}

const encoder = new TextEncoder();
/** The services' codes and statuses: the HTTP API's (src/api/errors.ts) for the same failures. */
export const SERVICE_ERROR_STATUS = {
  VALIDATION_FAILED: 400,
  FORBIDDEN: 403,
  MEMBER_NOT_FOUND: 404,
  INTERNAL_ERROR: 500,
  SUBMIT_FAILED: 503,
  /** Cluster mode: the member's partition has no owner answering within the router's handover wait. */
  PARTITION_UNAVAILABLE: 503,
  /** Cluster mode: too many reads waiting for their partitions' owners, here or at the owner. */
  OVERLOADED: 503,
  /** Cluster mode: the partition's owner is subscribed but did not answer in time. */
  PARTITION_TIMEOUT: 504,
} as const;
const STATUS = SERVICE_ERROR_STATUS;
type ServiceErrorCode = keyof typeof STATUS;

function respondError(message: ServiceMsg, code: ServiceErrorCode, text: string, extra: Record<string, unknown> = {}, details?: unknown): void {
  const headers = natsHeaders();
  headers.set(HEADER_ERROR_CODE, code);
  const error = details === undefined ? { code, message: text } : { code, message: text, details };
  message.respondError(STATUS[code], `${code}: ${text}`, encoder.encode(JSON.stringify({ error, ...extra })), {
    headers: headers as never,
  });
}

function isServiceErrorCode(code: string): code is ServiceErrorCode {
  return Object.hasOwn(STATUS, code);
}

/**
 * A routed read's failure as the HTTP route would answer it (routedReadError:
 * the same codes and messages), as a service error; a code the services do
 * not have (none today) is an INTERNAL_ERROR naming it.
 */
function respondRoutedError(message: ServiceMsg, memberId: string, failure: unknown): void {
  const mapped = routedReadError(failure, memberId);
  if (!(mapped instanceof ApiError)) {
    respondError(message, 'INTERNAL_ERROR', `member ${memberId}: the read at the partition's owner failed: ${(mapped as Error)?.message ?? String(mapped)}`);
    return;
  }
  if (isServiceErrorCode(mapped.code)) respondError(message, mapped.code, mapped.message, {}, mapped.details);
  else respondError(message, 'INTERNAL_ERROR', `${mapped.code}: ${mapped.message}`, {}, mapped.details);
}

function respondJson(message: ServiceMsg, value: unknown): void {
  message.respond(encoder.encode(JSON.stringify(value)));
}

function jsonOf(message: ServiceMsg): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: message.json() };
  } catch {
    return { ok: false };
  }
}

export async function startLoyaltyServices(nc: NatsConnection, ctx: ApiContext, options: LoyaltyServicesOptions = {}): Promise<LoyaltyServices> {
  const prefix = options.subjectPrefix ?? ctx.settings.subjectPrefix;
  const waitMsMax = options.waitMsMax ?? 30_000;
  // @nats-io/services is built against an earlier nats-core; the connection is the same protocol object.
  const svcm = new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]);
  const service = await svcm.add({
    name: SERVICE_NAME,
    version: SERVICE_VERSION,
    description: 'Loyalty engine: member wallets and event submission (docs/api.md)',
    queue: options.queue ?? SERVICE_NAME,
    metadata: { subjectPrefix: prefix },
  });

  service.addEndpoint('wallet', {
    subject: `${prefix}.svc.wallet`,
    metadata: { request: '{"memberId": string}', response: 'wallet JSON, as GET /v1/members/{memberId}/wallet' },
    handler: (error, message) => {
      if (error !== null) return;
      try {
        const body = jsonOf(message);
        const memberId = body.ok ? memberIdSchema.safeParse((body.value as { memberId?: unknown } | null)?.memberId) : undefined;
        if (memberId === undefined || !memberId.success) {
          respondError(message, 'VALIDATION_FAILED', 'request must be {"memberId": "<member id>"}');
          return;
        }
        // Cluster mode: not this instance's partition, so its store is stale or empty for the member; the owner answers.
        const routing = ctx.memberRouting;
        if (routing !== undefined && !routing.owns(memberId.data)) {
          const member = memberId.data;
          void routing.wallet(member).then(
            (text) => message.respond(encoder.encode(text)),
            (failure: unknown) => respondRoutedError(message, member, failure),
          ).catch(() => undefined); // the connection closed under the reply: nothing left to answer on
          return;
        }
        const state = ctx.reads.walletMember !== undefined ? ctx.reads.walletMember(memberId.data) : ctx.reads.member(memberId.data);
        if (state === undefined) {
          respondError(message, 'MEMBER_NOT_FOUND', `member ${memberId.data} is not known`);
          return;
        }
        const program = ctx.programs.active();
        message.respond(encoder.encode(walletJson(walletResponse(walletView(state, program, Date.now()), program))));
      } catch (failure) {
        respondError(message, 'INTERNAL_ERROR', (failure as Error)?.message ?? String(failure));
      }
    },
  });

  service.addEndpoint('submit', {
    subject: `${prefix}.svc.submit`,
    metadata: {
      request: `an event (docs/contract.md), or {"event": {...}, "waitMs": n}; header ${HEADER_WAIT_MS} also sets the wait`,
      response: 'SubmitResult: {eventId, sequence, duplicate, outcomes?, timedOut?}',
    },
    handler: (error, message) => {
      if (error !== null) return;
      void submit(message).catch((failure: unknown) => respondError(message, 'INTERNAL_ERROR', (failure as Error)?.message ?? String(failure)));
    },
  });

  async function submit(message: ServiceMsg): Promise<void> {
    const body = jsonOf(message);
    if (!body.ok || typeof body.value !== 'object' || body.value === null) {
      respondError(message, 'VALIDATION_FAILED', 'request must be a JSON event, or {"event": {...}, "waitMs": n}');
      return;
    }
    const wrapped = 'event' in body.value && !('type' in body.value);
    const candidate = wrapped ? (body.value as { event: unknown }).event : body.value;
    const waitRaw = wrapped ? (body.value as { waitMs?: unknown }).waitMs : message.headers?.get(HEADER_WAIT_MS);
    const waitMs = Number(waitRaw ?? 0);
    if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > waitMsMax) {
      respondError(message, 'VALIDATION_FAILED', `waitMs must be an integer from 0 to ${waitMsMax}`);
      return;
    }
    const validation = validateEvent(candidate);
    if (!validation.ok) {
      respondError(message, 'VALIDATION_FAILED', validation.reason);
      return;
    }
    if (validation.event.type === 'erase' && options.allowErase !== true) {
      respondError(message, 'FORBIDDEN', 'erase is not accepted on this service; use POST /v1/members/{id}/erase (admin)');
      return;
    }
    let result: SubmitResult;
    try {
      result = await ctx.submitter.submit(validation.event, waitMs > 0 ? { waitMs } : {});
    } catch (failure) {
      respondError(message, 'SUBMIT_FAILED', `event ${validation.event.id} could not be published (${(failure as Error).message}); re-send it with the same id, which is safe`, {
        eventId: validation.event.id,
      });
      return;
    }
    respondJson(message, result);
  }

  return {
    id: service.info().id,
    stop: async () => {
      await service.stop();
    },
  };
}
