import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiContext } from '../context.js';
import type { MetricsSource } from './index.js';
import { ApiError, errorBodySchema } from '../errors.js';

/** /health (no auth: load balancers and orchestrators), /metrics and /openapi.json (read role). */
export function registerSystemRoutes(app: FastifyInstance, ctx: ApiContext, registry: MetricsSource | undefined): void {
  app.get(
    '/health',
    {
      config: { role: 'none' },
      schema: {
        tags: ['system'],
        summary: 'Engine health (no authentication)',
        security: [],
        response: {
          200: z.object({ status: z.literal('ok') }).loose(),
          503: z.object({ status: z.literal('unavailable') }).loose(),
        },
      },
    },
    async (_request, reply) => {
      const health = await ctx.health();
      return reply.code(health.ok ? 200 : 503).send({ status: health.ok ? 'ok' : 'unavailable', ...health.detail });
    },
  );

  app.get(
    '/metrics',
    {
      config: { role: 'read' },
      schema: {
        tags: ['system'],
        summary: 'Prometheus metrics (text exposition format)',
        response: { 200: z.string().meta({ description: 'Prometheus text format' }), 401: errorBodySchema },
      },
    },
    async (_request, reply) => {
      if (registry === undefined) throw new ApiError('NOT_FOUND', 'no metrics registry');
      const body = await registry.metrics();
      return reply.type(registry.contentType).send(body);
    },
  );

  app.get(
    '/openapi.json',
    {
      config: { role: 'read' },
      schema: { tags: ['system'], summary: 'This API as an OpenAPI 3 document', response: { 200: z.record(z.string(), z.unknown()) } },
    },
    async (_request, reply) => reply.type('application/json; charset=utf-8').send(app.swagger()),
  );
}
