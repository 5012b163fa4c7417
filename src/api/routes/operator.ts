import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { EVENT_ID_LENGTH_MAX, loyaltyEventSchema, validateEvent, type LoyaltyEvent } from '../../domain/events.js';
import type { Role } from '../auth.js';
import type { ApiContext } from '../context.js';
import { ApiError, errorBodySchema, validationError } from '../errors.js';
import { documentOnly, memberIdParam, memberParams } from '../schema.js';
import { acceptedResponseSchema, appliedResponseSchema, eventIdFor, idempotencyHeadersSchema, submitAndReply, waitQuerySchema } from '../submission.js';
import { jsonBodyBytesMax, principalOf } from './index.js';

/**
 * Operator endpoints: each builds the right event and submits it like any
 * other (the member's actor is the only writer). Idempotency-Key becomes the
 * event id, so a retried request changes nothing and gets the first outcome.
 */

const occurredAt = z.iso.datetime({ offset: true }).optional().meta({ description: 'event time; default now' });
const channel = z.string().min(1).max(64).optional();
const pointsCurrency = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'a points currency id such as points or miles')
  .optional()
  .meta({ description: "a points currency of the program; default the program's first" });

const adjustmentBody = z
  .object({
    direction: z.enum(['credit', 'debit']),
    points: z.number().int().min(1).max(1_000_000_000),
    currency: pointsCurrency,
    reason: z.string().min(1).max(256),
    qualifying: z.boolean().optional().meta({ description: 'a credit that also counts toward tiers' }),
    occurredAt,
  })
  .strict();

const redemptionBody = z
  .object({ rewardId: z.string().min(1).max(64), points: z.number().int().min(1).max(1_000_000_000), currency: pointsCurrency, occurredAt, channel })
  .strict();

const emptyBody = z.object({ occurredAt, channel }).strict().nullish();

const enrollBody = z
  .object({
    attributes: z.record(z.string(), z.string().max(256)).optional().meta({ description: 'merged into the member attributes (personal data)' }),
    segments: z.array(z.string().min(1).max(64)).max(64).optional(),
    occurredAt,
    channel,
  })
  .strict()
  .nullish();

const eventIdParam = z.string().min(1).max(EVENT_ID_LENGTH_MAX);
const cancelParams = z.object({ memberId: memberIdParam, eventId: eventIdParam }).strict();
const voucherParams = z.object({ memberId: memberIdParam, code: z.string().min(1).max(64) }).strict();

const responses = {
  200: appliedResponseSchema,
  202: acceptedResponseSchema,
  400: errorBodySchema,
  401: errorBodySchema,
  403: errorBodySchema,
  404: errorBodySchema,
  504: errorBodySchema,
};

interface OperatorRoute<B extends z.ZodType, P extends z.ZodType> {
  readonly url: string;
  readonly role: Role;
  readonly summary: string;
  readonly params: P;
  readonly body: B;
  readonly idPrefix: string;
  /** Unknown members are refused with 404 (an operator's typo must not enroll someone). */
  readonly memberMustExist: boolean;
  build(params: z.output<P>, body: NonNullable<z.output<B>>, context: { operator: string; occurredAt: string; eventId: string; currency: string | undefined }): Record<string, unknown>;
}

export function registerOperatorRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const route = <B extends z.ZodType, P extends z.ZodType>(spec: OperatorRoute<B, P>) => {
    app.post(
      spec.url,
      {
        config: { role: spec.role },
        bodyLimit: jsonBodyBytesMax(ctx),
        schema: {
          tags: ['events'],
          summary: spec.summary,
          description: `Role: ${spec.role}. Header Idempotency-Key (optional) becomes the event id. ?wait=true waits for the outcome.`,
          params: spec.params,
          querystring: waitQuerySchema,
          headers: documentOnly(idempotencyHeadersSchema),
          body: spec.body,
          response: responses,
        },
      },
      async (request: FastifyRequest, reply) => {
        const principal = principalOf(request);
        const params = request.params as z.output<P> & { memberId: string };
        const body = (request.body ?? {}) as NonNullable<z.output<B>>;
        const eventId = eventIdFor(request, spec.idPrefix);
        const currency = currencyOf(ctx, (body as { currency?: string }).currency);
        if (spec.memberMustExist && ctx.reads.member(params.memberId) === undefined) {
          throw new ApiError('MEMBER_NOT_FOUND', `member ${params.memberId} is not known`);
        }
        const event = spec.build(params, body, {
          operator: principal.name,
          occurredAt: (body as { occurredAt?: string }).occurredAt ?? new Date().toISOString(),
          eventId,
          currency,
        });
        return submitAndReply(ctx, reply, checked(event), request.query as z.output<typeof waitQuerySchema>);
      },
    );
  };

  route({
    url: '/v1/members/:memberId/adjustments',
    role: 'write',
    summary: 'Credit or debit points (operator = the token name)',
    params: memberParams,
    body: adjustmentBody,
    idPrefix: 'adj',
    memberMustExist: true,
    build: (params, body, c) => ({
      id: c.eventId,
      memberId: params.memberId,
      type: 'adjustment',
      occurredAt: c.occurredAt,
      direction: body.direction,
      points: body.points,
      currency: c.currency,
      reason: body.reason,
      operator: c.operator,
      ...(body.qualifying !== undefined ? { qualifying: body.qualifying } : {}),
    }),
  });

  route({
    url: '/v1/members/:memberId/redemptions',
    role: 'write',
    summary: 'Redeem points for a reward',
    params: memberParams,
    body: redemptionBody,
    idPrefix: 'red',
    memberMustExist: true,
    build: (params, body, c) => ({
      id: c.eventId,
      memberId: params.memberId,
      type: 'redemption',
      occurredAt: c.occurredAt,
      rewardId: body.rewardId,
      points: body.points,
      currency: c.currency,
      ...(body.channel !== undefined ? { channel: body.channel } : {}),
    }),
  });

  route({
    url: '/v1/members/:memberId/redemptions/:eventId/cancel',
    role: 'write',
    summary: 'Cancel a redemption (within the program cancel window)',
    params: cancelParams,
    body: emptyBody,
    idPrefix: 'cancel',
    memberMustExist: true,
    build: (params, body, c) => ({
      id: c.eventId,
      memberId: params.memberId,
      type: 'redemption_cancel',
      occurredAt: c.occurredAt,
      redemptionId: params.eventId,
      ...(body.channel !== undefined ? { channel: body.channel } : {}),
    }),
  });

  route({
    url: '/v1/members/:memberId/vouchers/:code/redeem',
    role: 'write',
    summary: 'Redeem an issued voucher',
    params: voucherParams,
    body: emptyBody,
    idPrefix: 'voucher',
    memberMustExist: true,
    build: (params, body, c) => ({
      id: c.eventId,
      memberId: params.memberId,
      type: 'voucher_redeem',
      occurredAt: c.occurredAt,
      code: params.code,
      ...(body.channel !== undefined ? { channel: body.channel } : {}),
    }),
  });

  route({
    url: '/v1/members/:memberId/enroll',
    role: 'write',
    summary: 'Enroll a member (or update attributes and segments, or re-enroll)',
    params: memberParams,
    body: enrollBody,
    idPrefix: 'enroll',
    memberMustExist: false,
    build: (params, body, c) => ({
      id: c.eventId,
      memberId: params.memberId,
      type: 'enroll',
      occurredAt: c.occurredAt,
      ...(body.attributes !== undefined ? { attributes: body.attributes } : {}),
      ...(body.segments !== undefined ? { segments: body.segments } : {}),
      ...(body.channel !== undefined ? { channel: body.channel } : {}),
    }),
  });

  route({
    url: '/v1/members/:memberId/unenroll',
    role: 'write',
    summary: 'Unenroll a member (points forfeited or kept, per program)',
    params: memberParams,
    body: emptyBody,
    idPrefix: 'unenroll',
    memberMustExist: true,
    build: (params, body, c) => ({
      id: c.eventId,
      memberId: params.memberId,
      type: 'unenroll',
      occurredAt: c.occurredAt,
      ...(body.channel !== undefined ? { channel: body.channel } : {}),
    }),
  });

  route({
    url: '/v1/members/:memberId/erase',
    role: 'admin',
    summary: 'Erase a member personal data (admin)',
    params: memberParams,
    body: emptyBody,
    idPrefix: 'erase',
    memberMustExist: true,
    build: (params, body, c) => ({
      id: c.eventId,
      memberId: params.memberId,
      type: 'erase',
      occurredAt: c.occurredAt,
      ...(body.channel !== undefined ? { channel: body.channel } : {}),
    }),
  });
}

/** The currency, checked against the active program; undefined means its first currency. */
export function currencyOf(ctx: ApiContext, requested: string | undefined): string {
  const currencies = ctx.programs.active().currencies.map((currency) => currency.id);
  if (requested === undefined) return currencies[0]!;
  if (!currencies.includes(requested)) {
    const message = `unknown currency "${requested}"; the program has ${currencies.join(', ')}`;
    throw new ApiError('VALIDATION_FAILED', `body.currency: ${message}`, { issues: [{ field: 'body.currency', message }] });
  }
  return requested;
}

/** The domain's validation of what we built (the contract is the single authority). */
function checked(candidate: Record<string, unknown>): LoyaltyEvent {
  const validation = validateEvent(candidate);
  if (validation.ok) return validation.event;
  const parsed = loyaltyEventSchema.safeParse(candidate);
  if (!parsed.success) throw validationError('event', parsed.error.issues);
  throw new ApiError('VALIDATION_FAILED', validation.reason);
}
