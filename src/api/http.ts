import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

/**
 * The HTTP server: health and Prometheus metrics. Member wallet and operator
 * routes register on the same instance (src/api/routes/).
 */
export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly health: () => { readonly ok: boolean; readonly detail: Record<string, unknown> };
  /** Request bodies larger than this are refused with 413. */
  readonly bodyBytesMax?: number;
}

export async function startHttpServer(options: HttpServerOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: options.bodyBytesMax ?? 1024 * 1024 });
  app.get('/health', async (_request, reply) => {
    const health = options.health();
    return reply.code(health.ok ? 200 : 503).send({ status: health.ok ? 'ok' : 'unavailable', ...health.detail });
  });
  app.get('/metrics', async (_request, reply) => {
    const body = await options.registry.metrics();
    return reply.type(options.registry.contentType).send(body);
  });
  await app.listen({ host: options.host, port: options.port });
  return app;
}

export function listeningPort(app: FastifyInstance): number {
  const address = app.server.address();
  return typeof address === 'object' && address !== null ? address.port : 0;
}
