import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { LoyaltyEvent } from '../domain/events.js';
import type { ApiContext, SubmitResult } from './context.js';
import { ApiError } from './errors.js';
import { isEmptyObject, queryBoolean, queryInteger, serializeWithSchema, withFastCheck } from './schema.js';

/**
 * Submitting an event for a request: idempotency key, optional wait for the
 * outcome, and the response every write endpoint shares.
 */

export const WAIT_MS_DEFAULT = 5_000;
export const WAIT_MS_MAX = 30_000;

export const waitQuerySchema = z
  .object({
    wait: queryBoolean.meta({ description: 'wait for the outcome (default false: 202 as soon as the stream stored the event)' }),
    timeoutMs: queryInteger(1, WAIT_MS_MAX).meta({ description: `how long to wait, default ${WAIT_MS_DEFAULT}, at most ${WAIT_MS_MAX}` }),
  })
  .strict();

// No query at all, the common case: nothing to check, zod need not run.
withFastCheck(waitQuerySchema, isEmptyObject);

export type WaitQuery = z.output<typeof waitQuerySchema>;

export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;

export const idempotencyHeadersSchema = z
  .object({
    'idempotency-key': z
      .string()
      .regex(IDEMPOTENCY_KEY_PATTERN, '1-128 visible ASCII characters')
      .optional()
      .meta({ description: 'becomes the event id: a retry with the same key changes nothing and gets the first outcome' }),
  })
  .loose();

/** The event id: the client's Idempotency-Key, or a fresh one. */
export function eventIdFor(request: FastifyRequest, prefix: string): string {
  const key = request.headers['idempotency-key'];
  if (typeof key === 'string' && key !== '') {
    if (!IDEMPOTENCY_KEY_PATTERN.test(key)) {
      throw new ApiError('VALIDATION_FAILED', 'headers.idempotency-key: 1-128 visible ASCII characters', {
        issues: [{ field: 'headers.idempotency-key', message: '1-128 visible ASCII characters' }],
      });
    }
    return key;
  }
  return `${prefix}-${randomUUID()}`;
}

export const outcomeSchema = z.record(z.string(), z.unknown()).meta({ description: 'an outcome message as published on loyalty.outcome.<kind>.<memberId> (docs/contract.md)' });

export const acceptedResponseSchema = z.object({
  eventId: z.string(),
  sequence: z.number().int().meta({ description: 'JetStream stream sequence of the event' }),
  duplicate: z.boolean().meta({ description: "true when the stream's duplicate window recognised the event id" }),
  accepted: z.literal(true),
});

// Serialised by fast-json-stringify: submitResponse builds exactly this shape for 202.
serializeWithSchema(acceptedResponseSchema);

export const appliedResponseSchema = acceptedResponseSchema.extend({
  result: z.enum(['applied', 'rejected']),
  rejection: z.object({ code: z.string(), reason: z.string() }).optional(),
  outcomes: z.array(outcomeSchema),
});

export async function submitEvent(ctx: ApiContext, event: LoyaltyEvent, waitMs: number): Promise<SubmitResult> {
  try {
    return await ctx.submitter.submit(event, waitMs > 0 ? { waitMs } : {});
  } catch (error) {
    throw new ApiError(
      'SUBMIT_FAILED',
      `event ${event.id} could not be published (${(error as Error).message}); it may or may not be stored: re-send it with the same id, which is safe`,
      { eventId: event.id },
    );
  }
}

export function waitMsOf(query: WaitQuery): number {
  return query.wait === true ? Math.min(query.timeoutMs ?? WAIT_MS_DEFAULT, WAIT_MS_MAX) : 0;
}

/** The shared response body of a submit; throws OUTCOME_TIMEOUT when a wait ran out. */
export function submitResponse(result: SubmitResult, waitMs: number): { status: number; body: Record<string, unknown> } {
  const base = { eventId: result.eventId, sequence: result.sequence, duplicate: result.duplicate, accepted: true as const };
  if (waitMs === 0) return { status: 202, body: base };
  const outcomes = result.outcomes ?? [];
  if (result.timedOut === true || outcomes.length === 0) {
    throw new ApiError(
      'OUTCOME_TIMEOUT',
      `no outcome within ${waitMs} ms; the event was accepted (stream sequence ${result.sequence}) and will still be applied: read the wallet, or re-send the same id to get its outcome`,
      base,
    );
  }
  const rejected = outcomes.find((outcome) => outcome.kind === 'rejected');
  return {
    status: 200,
    body: {
      ...base,
      result: rejected === undefined ? 'applied' : 'rejected',
      ...(rejected !== undefined ? { rejection: { code: String(rejected.code ?? ''), reason: String(rejected.reason ?? '') } } : {}),
      outcomes,
    },
  };
}

export async function submitAndReply(ctx: ApiContext, reply: FastifyReply, event: LoyaltyEvent, query: WaitQuery): Promise<FastifyReply> {
  const waitMs = waitMsOf(query);
  const result = await submitEvent(ctx, event, waitMs);
  const { status, body } = submitResponse(result, waitMs);
  return reply.code(status).send(body);
}
