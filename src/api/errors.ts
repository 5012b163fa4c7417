import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { Logger } from '../log.js';

/**
 * Every API error is `{ error: { code, message, details? } }` with a stable
 * code: clients branch on the code, people read the message. docs/api.md lists
 * the codes.
 */
export const ERROR_CODES = {
  VALIDATION_FAILED: 400,
  INVALID_JSON: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NO_TOKENS_CONFIGURED: 403,
  MEMBER_NOT_FOUND: 404,
  NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  /** Cluster mode: a report over more days than one KPI aggregation asks for (KPI_AGGREGATION_CODES.RANGE_TOO_LARGE). */
  RANGE_TOO_LARGE: 413,
  TOO_MANY_LINES: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  PROGRAM_INVALID: 422,
  TOO_MANY_JOBS: 429,
  INTERNAL_ERROR: 500,
  SUBMIT_FAILED: 503,
  UNAVAILABLE: 503,
  /** Cluster mode: the member's partition has no owner answering (a handover longer than the router waits). */
  PARTITION_UNAVAILABLE: 503,
  /** Cluster mode: too many reads waiting for their partitions' owners, here or at the owner. */
  OVERLOADED: 503,
  /** Cluster mode: no instance's KPI counters could be read for a report (none answered in time, or the request could not be sent). */
  REPORT_INCOMPLETE: 503,
  OUTCOME_TIMEOUT: 504,
  /** Cluster mode: the partition's owner is subscribed but did not answer in time. */
  PARTITION_TIMEOUT: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class ApiError extends Error {
  readonly statusCode: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
    this.name = 'ApiError';
    this.statusCode = ERROR_CODES[code];
  }
}

export const errorBodySchema = z
  .object({
    error: z.object({
      code: z.string().meta({ description: 'Stable machine-readable code, e.g. VALIDATION_FAILED' }),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  // No id: @fastify/swagger rewrote the $ref to #/components/schemas/Error but left components empty.
  .meta({ description: 'Every error: { error: { code, message, details? } }' });

export interface Issue {
  /** Where: body, querystring, params or headers, then the field path. */
  readonly field: string;
  readonly message: string;
}

/** A zod failure thrown by the validator compiler; the error handler turns it into VALIDATION_FAILED. */
export class RequestValidationError extends Error {
  readonly statusCode = 400;
  constructor(readonly issues: readonly z.core.$ZodIssue[]) {
    super(issues.map((issue) => `${pathOf(issue.path)}: ${issue.message}`).join('; '));
    this.name = 'RequestValidationError';
  }
}

export function pathOf(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(root)' : path.map(String).join('.');
}

/** VALIDATION_FAILED naming every bad field. */
export function validationError(where: string, issues: readonly z.core.$ZodIssue[]): ApiError {
  const list: Issue[] = issues.map((issue) => ({ field: issue.path.length === 0 ? where : `${where}.${pathOf(issue.path)}`, message: issue.message }));
  return new ApiError('VALIDATION_FAILED', list.map((issue) => `${issue.field}: ${issue.message}`).join('; '), { issues: list });
}

export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  if (error.headers !== undefined) reply.headers(error.headers);
  const body: { code: string; message: string; details?: unknown } = { code: error.code, message: error.message };
  if (error.details !== undefined) body.details = error.details;
  return reply.code(error.statusCode).type('application/json; charset=utf-8').send({ error: body });
}

/** Fastify's own errors (bad JSON, 413, 415, ...) mapped to our codes. */
function fromFastifyError(error: FastifyError & { validationContext?: string; validation?: unknown }): ApiError {
  if (error instanceof RequestValidationError || (error as unknown) instanceof RequestValidationError) {
    return validationError(error.validationContext ?? 'request', (error as unknown as RequestValidationError).issues);
  }
  if (error.cause instanceof RequestValidationError) return validationError(error.validationContext ?? 'request', error.cause.issues);
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('PAYLOAD_TOO_LARGE', `request body is larger than this endpoint accepts: ${error.message}`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('UNSUPPORTED_MEDIA_TYPE', error.message);
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('INVALID_JSON', `body is not valid JSON: ${error.message}`);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError('INVALID_JSON', 'body is empty but Content-Type is application/json');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ApiError('VALIDATION_FAILED', error.message);
    default:
      break;
  }
  if (error.validation !== undefined) {
    return new ApiError('VALIDATION_FAILED', error.message);
  }
  if (error instanceof SyntaxError && error.statusCode === 400) {
    return new ApiError('INVALID_JSON', `body is not valid JSON: ${error.message}`);
  }
  if (typeof error.statusCode === 'number' && error.statusCode === 413) return new ApiError('PAYLOAD_TOO_LARGE', error.message);
  if (typeof error.statusCode === 'number' && error.statusCode === 415) return new ApiError('UNSUPPORTED_MEDIA_TYPE', error.message);
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) return new ApiError('VALIDATION_FAILED', error.message);
  return new ApiError('INTERNAL_ERROR', 'internal error; see the engine log');
}

/** Installs the JSON error shape for every error, the 404 route included. */
export function installErrorHandling(app: FastifyInstance, logger: Logger | undefined): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const apiError = error instanceof ApiError ? error : fromFastifyError(error);
    if (apiError.statusCode >= 500 && apiError.code === 'INTERNAL_ERROR') {
      logger?.error({ err: error, method: request.method, url: request.routeOptions.url }, 'API request failed');
    }
    return sendError(reply, apiError);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new ApiError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}
