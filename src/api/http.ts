import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from '../log.js';
import type { ApiContext, Health } from './context.js';
import { registerApiRoutes, type ApiRouteOptions, type ApiRoutes, type MetricsSource } from './routes/index.js';

/**
 * The HTTP server. Without `api` it serves /health and /metrics only (open,
 * as before the API existed); with `api` it serves the whole API of
 * src/api/routes/ (bearer tokens, OpenAPI at /openapi.json; docs/api.md).
 */
export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  /** What /metrics serves: a prom-client Registry, or the API thread's view of the engine's. */
  readonly registry: MetricsSource;
  readonly health: () => Health | Promise<Health>;
  /** Request bodies larger than this are refused with 413 (default: api.settings.httpBodyBytesMax, else 1 MiB). */
  readonly bodyBytesMax?: number;
  /** The engine's reads, submitter, programs and reports: serve the whole API. */
  readonly api?: ApiContext;
  readonly logger?: Logger;
  /** Bulk job limits and such (tests). */
  readonly routes?: Omit<ApiRouteOptions, 'registry' | 'logger' | 'listenHost'>;
}

/** Slow clients must not hold connections forever. */
const REQUEST_TIMEOUT_MS = 120_000;

const apiRoutes = new WeakMap<FastifyInstance, ApiRoutes>();

/** Builds the server without listening (fastify.inject in tests). */
export async function buildHttpServer(options: HttpServerOptions): Promise<FastifyInstance> {
  const bodyLimit = options.bodyBytesMax ?? options.api?.settings.httpBodyBytesMax ?? 1024 * 1024;
  const app = Fastify({
    logger: false,
    bodyLimit,
    // Event ids (up to 128 characters, URL-encoded) appear in paths.
    routerOptions: { maxParamLength: 512 },
    requestTimeout: REQUEST_TIMEOUT_MS,
    return503OnClosing: true,
    exposeHeadRoutes: false,
  });
  if (options.api === undefined) {
    app.get('/health', async (_request, reply) => {
      const health = await options.health();
      return reply.code(health.ok ? 200 : 503).send({ status: health.ok ? 'ok' : 'unavailable', ...health.detail });
    });
    app.get('/metrics', async (_request, reply) => {
      const body = await options.registry.metrics();
      return reply.type(options.registry.contentType).send(body);
    });
    return app;
  }
  const api: ApiContext = { ...options.api, health: options.health };
  const routes = await registerApiRoutes(app, api, {
    ...options.routes,
    registry: options.registry,
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
    listenHost: options.host,
  });
  apiRoutes.set(app, routes);
  // Bulk jobs follow outcomes over NATS: stop them before the connection goes.
  app.addHook('onClose', async () => routes.close());
  return app;
}

export async function startHttpServer(options: HttpServerOptions): Promise<FastifyInstance> {
  const app = await buildHttpServer(options);
  await app.listen({ host: options.host, port: options.port });
  return app;
}

/** The API routes of a server built with `api` (bulk jobs), if any. */
export function apiRoutesOf(app: FastifyInstance): ApiRoutes | undefined {
  return apiRoutes.get(app);
}

export function listeningPort(app: FastifyInstance): number {
  const address = app.server.address();
  return typeof address === 'object' && address !== null ? address.port : 0;
}
