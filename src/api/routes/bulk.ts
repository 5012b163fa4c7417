import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { LINE_STATUSES, reportChunks, type BulkFormat, type BulkJobs, type LineStatus } from '../bulk.js';
import type { ApiContext } from '../context.js';
import { ApiError, errorBodySchema } from '../errors.js';
import { documentOnly } from '../schema.js';
import { principalOf } from './index.js';

/** Bulk adjustments: upload (202 + job id), progress, per-line report. */

const jobParams = z.object({ jobId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'a job id') }).strict();

const uploadQuery = z
  .object({ format: z.enum(['csv', 'ndjson']).optional().meta({ description: 'overrides the Content-Type' }) })
  .strict();

const reportQuery = z
  .object({
    format: z.enum(['ndjson', 'csv']).optional().meta({ description: 'default from Accept (text/csv → csv), else ndjson' }),
    status: z
      .string()
      .transform((value) => value.split(',').filter((item) => item !== ''))
      .pipe(z.array(z.enum(LINE_STATUSES as [LineStatus, ...LineStatus[]])))
      .optional()
      .meta({ description: `only lines with these statuses, comma separated: ${LINE_STATUSES.join(', ')}` }),
  })
  .strict();

const countsSchema = z.object({
  total: z.number().int(),
  invalid: z.number().int(),
  queued: z.number().int().meta({ description: 'valid, not yet acknowledged by the stream' }),
  submitted: z.number().int().meta({ description: 'stored in the stream' }),
  applied: z.number().int(),
  rejected: z.number().int(),
  pending: z.number().int().meta({ description: 'submitted, outcome not yet received' }),
  failed: z.number().int().meta({ description: 'could not be published' }),
  duplicates: z.number().int(),
});

export const bulkStatusSchema = z.object({
  jobId: z.string(),
  state: z.enum(['running', 'awaiting_outcomes', 'completed', 'incomplete', 'failed', 'stopped']),
  format: z.enum(['csv', 'ndjson']),
  operator: z.string(),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
  outcomesTracked: z.boolean(),
  counts: countsSchema,
  publishedPerSecond: z.number().nullable(),
  error: z.string().optional(),
});

function formatOf(contentType: string | undefined, override: BulkFormat | undefined): BulkFormat {
  if (override !== undefined) return override;
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'text/csv') return 'csv';
  if (type === 'application/x-ndjson' || type === 'application/ndjson' || type === 'application/jsonl') return 'ndjson';
  throw new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the file as text/csv or application/x-ndjson (or text/plain with ?format=csv|ndjson)');
}

export function registerBulkRoutes(app: FastifyInstance, ctx: ApiContext, jobs: BulkJobs): void {
  app.post(
    '/v1/bulk/adjustments',
    {
      config: { role: 'write' },
      bodyLimit: ctx.settings.httpBodyBytesMax,
      schema: {
        tags: ['bulk'],
        summary: 'Bulk adjustments from a CSV or NDJSON file (write role)',
        description:
          'CSV header: memberId,direction,points,reason and optionally currency,id,qualifying,occurredAt (any order). NDJSON: one object per line with the same fields. ' +
          'One adjustment event per valid line, id `bulk:<jobId>:<line>` unless the line gives one. Idempotency-Key (1-64 of A-Z a-z 0-9 _ -) becomes the job id: ' +
          'posting again with the same key returns the job instead of running it twice. The job runs on after the 202.',
        consumes: ['text/csv', 'application/x-ndjson', 'application/ndjson', 'application/jsonl', 'text/plain'],
        querystring: uploadQuery,
        body: documentOnly(z.string().meta({ description: 'the file' })),
        response: {
          200: bulkStatusSchema.extend({ statusUrl: z.string(), reportUrl: z.string() }),
          202: bulkStatusSchema.extend({ statusUrl: z.string(), reportUrl: z.string() }),
          400: errorBodySchema,
          413: errorBodySchema,
          415: errorBodySchema,
          429: errorBodySchema,
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const query = request.query as z.output<typeof uploadQuery>;
      const format = formatOf(request.headers['content-type'], query.format);
      if (typeof request.body !== 'string') {
        throw new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the file as text/csv or application/x-ndjson (or text/plain with ?format=csv|ndjson)');
      }
      const key = request.headers['idempotency-key'];
      const upload = jobs.check(request.body, format);
      const { job, existing } = jobs.start(upload, principal.name, typeof key === 'string' && key !== '' ? key : undefined);
      return reply
        .code(existing ? 200 : 202)
        .header('location', `/v1/bulk/${job.jobId}`)
        .send({ ...job.status(), statusUrl: `/v1/bulk/${job.jobId}`, reportUrl: `/v1/bulk/${job.jobId}/report` });
    },
  );

  app.get(
    '/v1/bulk/:jobId',
    {
      config: { role: 'read' },
      schema: { tags: ['bulk'], summary: 'Progress of a bulk job', params: jobParams, response: { 200: bulkStatusSchema, 404: errorBodySchema } },
    },
    async (request) => {
      const { jobId } = request.params as z.output<typeof jobParams>;
      const job = jobs.get(jobId);
      if (job === undefined) throw new ApiError('NOT_FOUND', `no bulk job ${jobId} (jobs are kept in memory, the last ${jobs.options.jobsMax})`);
      return job.status();
    },
  );

  app.get(
    '/v1/bulk/:jobId/report',
    {
      config: { role: 'read' },
      schema: {
        tags: ['bulk'],
        summary: 'Per-line results of a bulk job, NDJSON or CSV',
        description: 'Each line: line, id, memberId, status (invalid, queued, submitted, applied, rejected, failed), reason, sequence, duplicate. Partial while the job runs.',
        params: jobParams,
        querystring: reportQuery,
        produces: ['application/x-ndjson', 'text/csv'],
        response: { 200: z.string(), 404: errorBodySchema },
      },
    },
    async (request, reply) => {
      const { jobId } = request.params as z.output<typeof jobParams>;
      const query = request.query as z.output<typeof reportQuery>;
      const job = jobs.get(jobId);
      if (job === undefined) throw new ApiError('NOT_FOUND', `no bulk job ${jobId}`);
      const accept = String(request.headers.accept ?? '');
      const format = query.format ?? (accept.includes('text/csv') ? 'csv' : 'ndjson');
      const filter = query.status === undefined || query.status.length === 0 ? undefined : new Set(query.status);
      reply.type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
      reply.header('content-disposition', `attachment; filename="bulk-${job.jobId}.${format === 'csv' ? 'csv' : 'ndjson'}"`);
      return reply.send(Readable.from(reportChunks(job, format, filter)));
    },
  );
}
