import swagger from '@fastify/swagger';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from '../../log.js';
import { isLoopback, loadApiTokens, roleAllows, type Principal, type Role, type TokenTable } from '../auth.js';
import { BulkJobs, type BulkJobsOptions } from '../bulk.js';
import type { ApiContext } from '../context.js';
import { ApiError, installErrorHandling, sendError } from '../errors.js';
import { jsonNestingError } from '../json-depth.js';
import { installZodCompilers, swaggerTransform } from '../schema.js';
import { registerBulkRoutes } from './bulk.js';
import { registerEventRoutes } from './events.js';
import { registerMemberRoutes } from './members.js';
import { registerOperatorRoutes } from './operator.js';
import { registerProgramRoutes } from './program.js';
import { registerReportRoutes } from './reports.js';
import { registerSystemRoutes } from './system.js';

/**
 * The whole HTTP API on one fastify instance: zod validation, the JSON error
 * shape, bearer-token roles, the OpenAPI document and every route
 * (one file per area in this folder). docs/api.md describes it for people.
 */

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The least role a route needs; 'none' only for /health. */
    role?: Role | 'none';
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** What /metrics serves: a prom-client Registry has both. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export interface ApiRouteOptions {
  /** Prometheus metrics served at /metrics (read role). */
  readonly registry?: MetricsSource;
  readonly logger?: Logger;
  /** Tokens; default: parsed from ctx.settings (LOYALTY_API_TOKENS, LOYALTY_API_TOKENS_FILE). */
  readonly tokens?: TokenTable;
  /** The host the server listens on; default ctx.settings.httpHost. Decides the no-token fallback. */
  readonly listenHost?: string;
  readonly bulk?: BulkJobsOptions;
}

export interface ApiRoutes {
  readonly bulkJobs: BulkJobs;
  /** Stops bulk jobs (their outcome tracking); call before closing NATS. */
  close(): void;
}

const JSON_ONLY: readonly string[] = ['application/json'];

/**
 * 415 before the body is read when a request sends a content type its route
 * does not take: the route schema's `consumes` (also what OpenAPI shows), JSON
 * where a route has a body schema and names none. Without this, fastify's
 * built-in text/plain parser would hand a JSON route a string and the answer
 * would be a confusing 400 "must be a JSON object".
 */
function unsupportedMediaType(request: FastifyRequest): ApiError | undefined {
  const header = request.headers['content-type'];
  if (header === undefined) return undefined;
  const schema = request.routeOptions.schema as { readonly body?: unknown; readonly consumes?: readonly string[] } | undefined;
  if (schema?.body === undefined) return undefined;
  const consumes = schema.consumes ?? JSON_ONLY;
  const type = header.split(';', 1)[0]!.trim().toLowerCase();
  if (consumes.includes(type)) return undefined;
  return new ApiError('UNSUPPORTED_MEDIA_TYPE', `Content-Type ${type || '(empty)'} is not taken here: send ${consumes.join(', ')}`);
}

/** The body size of JSON write endpoints: an event is never larger than the engine accepts. */
export function jsonBodyBytesMax(ctx: ApiContext): number {
  return Math.min(ctx.settings.payloadBytesMax, ctx.settings.httpBodyBytesMax);
}

/**
 * Registers everything on `app` (which must not be listening yet). The app's
 * own bodyLimit should be ctx.settings.httpBodyBytesMax (bulk uploads); JSON
 * endpoints set a smaller one per route.
 */
export async function registerApiRoutes(app: FastifyInstance, ctx: ApiContext, options: ApiRouteOptions = {}): Promise<ApiRoutes> {
  const tokens = options.tokens ?? loadApiTokens({ apiTokens: ctx.settings.apiTokens, apiTokensFile: ctx.settings.apiTokensFile });
  const listenHost = options.listenHost ?? ctx.settings.httpHost;
  const loopbackOnly = isLoopback(listenHost);
  if (tokens.size === 0) {
    options.logger?.warn(
      { httpHost: listenHost },
      loopbackOnly
        ? 'no API tokens configured (LOYALTY_API_TOKENS / LOYALTY_API_TOKENS_FILE): write and admin endpoints are refused; read endpoints are open to local clients only'
        : 'no API tokens configured (LOYALTY_API_TOKENS / LOYALTY_API_TOKENS_FILE): every API endpoint but /health is refused, since the server listens beyond loopback',
    );
  }

  installZodCompilers(app);
  installErrorHandling(app, options.logger);
  app.decorateRequest('principal', null);
  // JSON through Fastify's own parser (prototype poisoning refused), after a nesting bound.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    const nesting = jsonNestingError(text);
    if (nesting !== undefined) {
      done(new ApiError('INVALID_JSON', `body refused unparsed: ${nesting}`), undefined);
      return;
    }
    parseJson(request, text, done);
  });
  app.addContentTypeParser(
    ['text/csv', 'application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/yaml', 'application/x-yaml', 'text/yaml'],
    { parseAs: 'string' },
    (_request, body, done) => done(null, body),
  );
  // Callback hooks, not async ones: every request passes here, and an async hook costs a promise and a microtask hop.
  app.addHook('onRequest', (request, reply, done) => {
    const role = request.routeOptions.config?.role ?? 'read';
    if (role === 'none') {
      done();
      return;
    }
    const error = authorize(request, role, tokens, loopbackOnly) ?? unsupportedMediaType(request);
    if (error !== undefined) {
      sendError(reply, error); // answered: the lifecycle stops here, the body is never read
      return;
    }
    done();
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
    done(null, payload);
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Loyalty engine API',
        version: '1.0.0',
        description: 'Member wallets and ledgers, operator writes (as events through JetStream), bulk adjustments, program and reports. See docs/api.md.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token from LOYALTY_API_TOKENS or LOYALTY_API_TOKENS_FILE' } } },
      security: [{ bearer: [] }],
      tags: [
        { name: 'members', description: 'wallet and ledger' },
        { name: 'events', description: 'submit events, operator writes' },
        { name: 'bulk', description: 'bulk adjustments' },
        { name: 'program', description: 'the loyalty program' },
        { name: 'reports', description: 'KPIs' },
        { name: 'system', description: 'health, metrics, this document' },
      ],
    },
    transform: swaggerTransform as never,
  });

  const bulkJobs = new BulkJobs(ctx, options.bulk);
  registerSystemRoutes(app, ctx, options.registry);
  registerMemberRoutes(app, ctx);
  registerEventRoutes(app, ctx);
  registerOperatorRoutes(app, ctx);
  registerBulkRoutes(app, ctx, bulkJobs);
  registerProgramRoutes(app, ctx);
  registerReportRoutes(app, ctx);
  return { bulkJobs, close: () => bulkJobs.close() };
}

/** undefined when allowed (and request.principal set), else the error to send. */
function authorize(request: FastifyRequest, required: Role, tokens: TokenTable, loopbackOnly: boolean): ApiError | undefined {
  if (tokens.size === 0) {
    // Safe default without tokens: no writes at all; reads only when neither the
    // server nor the client is reachable from another machine.
    if (required === 'read' && loopbackOnly && isLoopback(request.socket.remoteAddress)) {
      request.principal = { role: 'read', name: 'local-anonymous' };
      return undefined;
    }
    return new ApiError(
      'NO_TOKENS_CONFIGURED',
      required === 'read'
        ? 'no API tokens are configured and the server listens beyond loopback: configure LOYALTY_API_TOKENS or LOYALTY_API_TOKENS_FILE'
        : 'no API tokens are configured, so write and admin endpoints are refused: configure LOYALTY_API_TOKENS or LOYALTY_API_TOKENS_FILE',
    );
  }
  const header = request.headers.authorization;
  const identification = tokens.identifyHeader(typeof header === 'string' ? header : undefined);
  if (identification.kind === 'missing') {
    return new ApiError('UNAUTHORIZED', 'missing bearer token: send Authorization: Bearer <token>', undefined, {
      'www-authenticate': 'Bearer realm="loyalty"',
    });
  }
  if (identification.kind === 'unknown') {
    return new ApiError('UNAUTHORIZED', 'unknown bearer token', undefined, {
      'www-authenticate': 'Bearer realm="loyalty", error="invalid_token"',
    });
  }
  const principal = identification.principal;
  if (!roleAllows(principal.role, required)) {
    return new ApiError('FORBIDDEN', `this endpoint needs the ${required} role; token "${principal.name}" has ${principal.role}`, {
      required,
      role: principal.role,
    });
  }
  request.principal = principal;
  return undefined;
}

/** The principal of an authorized request (set by the onRequest hook). */
export function principalOf(request: FastifyRequest): Principal {
  if (request.principal === null) throw new ApiError('UNAUTHORIZED', 'not authenticated');
  return request.principal;
}
