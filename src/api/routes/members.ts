import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import { LEDGER_KINDS } from '../../domain/state.js';
import type { ApiContext, LedgerQuery } from '../context.js';
import { ApiError, errorBodySchema } from '../errors.js';
import { ledgerPageResponse, routedReadError } from '../member-routing.js';
import { instantMs, instantSchema, memberParams, queryInteger } from '../schema.js';
import { decodeCursor, ledgerEntrySchema, walletResponseSchema } from '../views.js';
import { WalletCache } from '../wallet-cache.js';

/** What members see: the wallet (balances, pending, expiring, tier progress, vouchers) and the ledger. */

export { LEDGER_KINDS };

export const LEDGER_LIMIT_DEFAULT = 50;
export const LEDGER_LIMIT_MAX = 500;

const kindList = z
  .union([z.string(), z.array(z.string()).max(LEDGER_KINDS.length)], { error: `expected ledger kinds, comma separated or repeated (at most ${LEDGER_KINDS.length})` })
  .transform((value) => (Array.isArray(value) ? value : [value]).flatMap((item) => item.split(',')).filter((item) => item !== ''))
  .pipe(z.array(z.enum(LEDGER_KINDS)).max(LEDGER_KINDS.length))
  .optional()
  .meta({ description: `ledger entry kinds, comma separated or repeated: ${LEDGER_KINDS.join(', ')}` });

const ledgerQuery = z
  .object({
    cursor: z.string().max(64).optional().meta({ description: 'nextCursor of the previous page' }),
    limit: queryInteger(1, LEDGER_LIMIT_MAX).meta({ description: `entries per page, 1..${LEDGER_LIMIT_MAX}, default ${LEDGER_LIMIT_DEFAULT}` }),
    kind: kindList,
    from: instantSchema.optional().meta({ description: 'event time, inclusive (ISO 8601)' }),
    to: instantSchema.optional().meta({ description: 'event time, exclusive (ISO 8601)' }),
  })
  .strict();

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/**
 * Cluster mode (ctx.memberRouting): a member whose partition this instance does
 * not consume is read from the partition's owner (src/api/member-routing.ts),
 * its JSON text sent as the owner wrote it; the local path is unchanged.
 */
async function routed(memberId: string, reply: FastifyReply, read: () => Promise<string>): Promise<string> {
  let body: string;
  try {
    body = await read();
  } catch (error) {
    throw routedReadError(error, memberId);
  }
  reply.header('content-type', JSON_CONTENT_TYPE);
  return body;
}

export function registerMemberRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const wallets = ctx.wallets ?? new WalletCache(ctx.reads);
  const routing = ctx.memberRouting;
  app.get(
    '/v1/members/:memberId/wallet',
    {
      config: { role: 'read' },
      schema: {
        tags: ['members'],
        summary: 'A member wallet: balances, pending points, expiring points, tier progress, active vouchers',
        params: memberParams,
        response: { 200: walletResponseSchema, 404: errorBodySchema, 503: errorBodySchema, 504: errorBodySchema },
      },
    },
    // Synchronous, and the body is JSON text already (walletBody: the text walletResponseSchema's serializer
    // writes, kept per member by WalletCache): fastify sends a string with a JSON content type as it is.
    // Only a read routed to another instance (cluster mode) returns a promise.
    (request, reply) => {
      const { memberId } = request.params as z.output<typeof memberParams>;
      if (routing !== undefined && !routing.owns(memberId)) return routed(memberId, reply, () => routing.wallet(memberId));
      const body = wallets.json(memberId, ctx.programs.active(), Date.now());
      if (body === undefined) throw new ApiError('MEMBER_NOT_FOUND', `member ${memberId} is not known`);
      reply.header('content-type', JSON_CONTENT_TYPE).send(body);
      return undefined;
    },
  );

  app.get(
    '/v1/members/:memberId/ledger',
    {
      config: { role: 'read' },
      schema: {
        tags: ['members'],
        summary: 'A member ledger, oldest first, cursor paginated',
        params: memberParams,
        querystring: ledgerQuery,
        response: {
          200: z.object({ memberId: z.string(), entries: z.array(ledgerEntrySchema), nextCursor: z.string().nullable() }),
          400: errorBodySchema,
          404: errorBodySchema,
          503: errorBodySchema,
          504: errorBodySchema,
        },
      },
    },
    async (request, reply) => {
      const { memberId } = request.params as z.output<typeof memberParams>;
      const query = request.query as z.output<typeof ledgerQuery>;
      let afterSeq = 0;
      if (query.cursor !== undefined) {
        const decoded = decodeCursor(query.cursor);
        if (decoded === undefined) {
          throw new ApiError('VALIDATION_FAILED', 'querystring.cursor: not a cursor of this API (pass nextCursor of the previous page)', {
            issues: [{ field: 'querystring.cursor', message: 'not a cursor of this API' }],
          });
        }
        afterSeq = decoded;
      }
      const fromMs = query.from === undefined ? undefined : instantMs(query.from);
      const toMs = query.to === undefined ? undefined : instantMs(query.to);
      if (fromMs !== undefined && toMs !== undefined && fromMs >= toMs) {
        throw new ApiError('VALIDATION_FAILED', 'querystring.to: must be after from', { issues: [{ field: 'querystring.to', message: 'must be after from' }] });
      }
      const pageQuery: LedgerQuery = {
        afterSeq,
        limit: query.limit ?? LEDGER_LIMIT_DEFAULT,
        ...(query.kind !== undefined && query.kind.length > 0 ? { kinds: query.kind } : {}),
        ...(fromMs !== undefined ? { fromMs } : {}),
        ...(toMs !== undefined ? { toMs } : {}),
      };
      if (routing !== undefined && !routing.owns(memberId)) return routed(memberId, reply, () => routing.ledger(memberId, pageQuery));
      const page = ledgerPageResponse(ctx.reads, memberId, pageQuery);
      if (page === undefined) throw new ApiError('MEMBER_NOT_FOUND', `member ${memberId} is not known`);
      return page;
    },
  );
}
