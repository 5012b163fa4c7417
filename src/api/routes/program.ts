import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ApiContext, ProgramCheck } from '../context.js';
import { ApiError, errorBodySchema } from '../errors.js';
import { documentOnly } from '../schema.js';

/** The loyalty program: read it, validate a candidate, activate one without a restart (admin). */

const PROGRAM_BYTES_MAX = 16 * 1024 * 1024;

const programText = documentOnly(z.string().meta({ description: 'the program file, YAML or JSON (Content-Type application/yaml, text/plain or application/json)' }));
const validResponse = z.object({ valid: z.literal(true), program: z.object({ id: z.string(), name: z.string() }) });

function textOf(request: FastifyRequest): string {
  const body = request.body;
  if (typeof body === 'string') return body;
  // application/json arrives parsed; JSON is YAML, so its text is a valid program text.
  if (typeof body === 'object' && body !== null) return JSON.stringify(body);
  throw new ApiError('VALIDATION_FAILED', 'body: send the program file (YAML or JSON)', { issues: [{ field: 'body', message: 'missing' }] });
}

function invalid(check: Extract<ProgramCheck, { ok: false }>): ApiError {
  return new ApiError('PROGRAM_INVALID', `the program is invalid:\n  - ${check.errors.join('\n  - ')}`, { errors: check.errors });
}

export function registerProgramRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const bodyLimit = Math.min(ctx.settings.httpBodyBytesMax, PROGRAM_BYTES_MAX);

  app.get(
    '/v1/program',
    {
      config: { role: 'read' },
      schema: {
        tags: ['program'],
        summary: 'The active program, when and how it was activated',
        response: { 200: z.object({ program: z.record(z.string(), z.unknown()), since: z.string(), source: z.enum(['file', 'api']) }) },
      },
    },
    async () => {
      const since = ctx.programs.activeSince();
      return { program: ctx.programs.active(), since: new Date(since.atMs).toISOString(), source: since.source };
    },
  );

  app.post(
    '/v1/program/validate',
    {
      config: { role: 'write' },
      bodyLimit,
      schema: {
        tags: ['program'],
        summary: 'Check a program file; 422 lists every bad field',
        consumes: ['application/yaml', 'text/plain', 'application/json'],
        body: programText,
        response: { 200: validResponse, 422: errorBodySchema },
      },
    },
    async (request) => {
      const check = ctx.programs.validate(textOf(request));
      if (!check.ok) throw invalid(check);
      return { valid: true, program: { id: check.program.id, name: check.program.name } };
    },
  );

  app.post(
    '/v1/program/activate',
    {
      config: { role: 'admin' },
      bodyLimit,
      schema: {
        tags: ['program'],
        summary: 'Validate and activate a program, live without a restart (admin)',
        consumes: ['application/yaml', 'text/plain', 'application/json'],
        body: programText,
        response: {
          200: z.object({ activated: z.literal(true), program: z.object({ id: z.string(), name: z.string() }), since: z.string() }),
          422: errorBodySchema,
        },
      },
    },
    async (request) => {
      const text = textOf(request);
      const check = ctx.programs.validate(text);
      if (!check.ok) throw invalid(check);
      const activated = await ctx.programs.activate(text);
      if (!activated.ok) throw invalid(activated);
      return {
        activated: true,
        program: { id: activated.program.id, name: activated.program.name },
        since: new Date(ctx.programs.activeSince().atMs).toISOString(),
      };
    },
  );
}
