import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { loyaltyEventSchema, validateEvent } from '../../domain/events.js';
import { roleAllows } from '../auth.js';
import type { ApiContext } from '../context.js';
import { ApiError, errorBodySchema, validationError } from '../errors.js';
import { documentOnly } from '../schema.js';
import { acceptedResponseSchema, appliedResponseSchema, submitAndReply, waitQuerySchema } from '../submission.js';
import { jsonBodyBytesMax, principalOf } from './index.js';

/**
 * POST /v1/events: any event of the input contract, as a producer would
 * publish it on loyalty.tx.<memberId>. Write role; an erase needs admin.
 */
export function registerEventRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.post(
    '/v1/events',
    {
      config: { role: 'write' },
      bodyLimit: jsonBodyBytesMax(ctx),
      schema: {
        tags: ['events'],
        summary: 'Submit an event (write role; erase needs admin)',
        description:
          'Validated with the input contract, published to the input stream (Nats-Msg-Id <memberId>:<id>), applied by the member\'s actor. ' +
          'An adjustment without operator gets the token\'s name; only an admin may name another operator. ' +
          'With ?wait=true the response carries the outcomes (200), or 504 OUTCOME_TIMEOUT when none came in time (the event is still accepted).',
        querystring: waitQuerySchema,
        body: documentOnly(loyaltyEventSchema),
        response: { 200: appliedResponseSchema, 202: acceptedResponseSchema, 400: errorBodySchema, 403: errorBodySchema, 504: errorBodySchema },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const body = request.body;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new ApiError('VALIDATION_FAILED', 'body: must be a JSON object (an event)', { issues: [{ field: 'body', message: 'must be a JSON object' }] });
      }
      const candidate = { ...(body as Record<string, unknown>) };
      if (candidate.type === 'adjustment') {
        if (candidate.operator === undefined) candidate.operator = principal.name;
        else if (candidate.operator !== principal.name && !roleAllows(principal.role, 'admin')) {
          throw new ApiError('FORBIDDEN', `operator must be your token's name ("${principal.name}") or be left out; only admin may name another operator`, {
            required: 'admin',
            role: principal.role,
          });
        }
      }
      const validation = validateEvent(candidate);
      if (!validation.ok) {
        const parsed = loyaltyEventSchema.safeParse(candidate);
        if (!parsed.success) throw validationError('body', parsed.error.issues);
        throw new ApiError('VALIDATION_FAILED', `body: ${validation.reason}`, { issues: [{ field: 'body', message: validation.reason }] });
      }
      if (validation.event.type === 'erase' && !roleAllows(principal.role, 'admin')) {
        throw new ApiError('FORBIDDEN', `an erase needs the admin role; token "${principal.name}" has ${principal.role}`, { required: 'admin', role: principal.role });
      }
      return submitAndReply(ctx, reply, validation.event, request.query as z.output<typeof waitQuerySchema>);
    },
  );
}
