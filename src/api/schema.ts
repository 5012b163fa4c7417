import type { FastifyInstance, FastifySchema } from 'fastify';
import fastJsonStringify from 'fast-json-stringify';
import { z } from 'zod';
import { RequestValidationError } from './errors.js';

/**
 * zod schemas are the single source of truth for requests and responses:
 * fastify validates with them (no second validator), and the OpenAPI
 * document is generated from them with z.toJSONSchema.
 */

/** Schemas shown in the document but checked by the handler itself (e.g. with the domain's validateEvent). */
const documentedOnly = new WeakSet<object>();

/** Marks a schema as documentation only: fastify passes the value through, the handler validates. */
export function documentOnly<T extends z.ZodType>(schema: T): T {
  documentedOnly.add(schema);
  return schema;
}

/**
 * Hot-path shortcuts beside a zod schema. A fast check returns true only when
 * zod would accept the value unchanged (its output equal to the input); on
 * false, zod decides, so a refusal always has zod's issues and error shape.
 */
const fastChecks = new WeakMap<object, (data: unknown) => boolean>();

export function withFastCheck<T extends z.ZodType>(schema: T, check: (data: unknown) => boolean): T {
  fastChecks.set(schema, check);
  return schema;
}

/** The fast check of a schema, if it has one (tests). */
export function fastCheckOf(schema: z.ZodType): ((data: unknown) => boolean) | undefined {
  return fastChecks.get(schema);
}

/**
 * Response schemas serialised with fast-json-stringify (compiled from the
 * schema's JSON schema) instead of JSON.stringify. Only for bodies the
 * handler builds to the schema's exact shape: fast-json-stringify writes the
 * schema's properties and nothing else.
 */
const fastSerialized = new WeakSet<object>();

export function serializeWithSchema<T extends z.ZodType>(schema: T): T {
  fastSerialized.add(schema);
  return schema;
}

/** The serializer fastify uses for a response schema (tests compare it with JSON.stringify). */
export function serializerOf(schema: unknown): (data: unknown) => string {
  if (isZod(schema) && fastSerialized.has(schema)) return fastJsonStringify(jsonSchemaOf(schema, 'output') as never) as (data: unknown) => string;
  return (data: unknown) => JSON.stringify(data);
}

function isZod(value: unknown): value is z.ZodType {
  return typeof value === 'object' && value !== null && typeof (value as { safeParse?: unknown }).safeParse === 'function';
}

/** Validates body, querystring, params and headers with the route's zod schemas. */
export function installZodCompilers(app: FastifyInstance): void {
  app.setValidatorCompiler(({ schema }) => {
    if (!isZod(schema) || documentedOnly.has(schema)) return () => true;
    const zodCheck = (data: unknown) => {
      const result = schema.safeParse(data);
      return result.success ? { value: result.data } : { error: new RequestValidationError(result.error.issues) };
    };
    const fast = fastChecks.get(schema);
    if (fast === undefined) return zodCheck;
    return (data: unknown) => (fast(data) ? true : zodCheck(data));
  });
  // Responses are built by our own code: JSON.stringify, or fast-json-stringify for schemas marked serializeWithSchema.
  app.setSerializerCompiler(({ schema }) => serializerOf(schema));
}

/** JSON schema of a zod schema, for OpenAPI 3.0. */
export function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const json = z.toJSONSchema(schema, { target: 'openapi-3.0', io, unrepresentable: 'any' }) as Record<string, unknown>;
  delete json.$schema;
  return json;
}

const PARTS = ['body', 'querystring', 'params', 'headers'] as const;

/** @fastify/swagger transform: zod → JSON schema in every part of a route's schema. */
export function swaggerTransform({ schema, url }: { schema: FastifySchema | undefined; url: string }): { schema: FastifySchema; url: string } {
  if (schema === undefined || schema === null) return { schema: {} as FastifySchema, url };
  const out: Record<string, unknown> = { ...schema };
  for (const part of PARTS) {
    const value = (schema as Record<string, unknown>)[part];
    if (isZod(value)) out[part] = jsonSchemaOf(value, 'input');
  }
  const response = (schema as { response?: Record<string, unknown> }).response;
  if (response !== undefined) {
    const converted: Record<string, unknown> = {};
    for (const [status, value] of Object.entries(response)) {
      if (isZod(value)) {
        const { description, ...rest } = jsonSchemaOf(value, 'output');
        converted[status] = { description: typeof description === 'string' ? description : `HTTP ${status}`, ...rest };
      } else {
        converted[status] = value;
      }
    }
    out.response = converted;
  }
  return { schema: out as FastifySchema, url };
}

// ---- query helpers: query values arrive as strings (or arrays when repeated) ----

/** An integer query parameter in [min, max]. */
export function queryInteger(min: number, max: number): z.ZodType<number | undefined, string | undefined> {
  return z
    .string()
    .regex(/^-?\d{1,16}$/, 'must be an integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max))
    .optional() as unknown as z.ZodType<number | undefined, string | undefined>;
}

export const queryBoolean = z
  .enum(['true', 'false', '1', '0'])
  .transform((value) => value === 'true' || value === '1')
  .optional();

/** An instant: ISO 8601 date-time with offset, or a date (midnight UTC). */
export const instantSchema = z
  .union([z.iso.datetime({ offset: true }), z.iso.date()], {
    error: 'expected an ISO 8601 date-time with offset (2026-11-23T10:00:00Z) or a date (2026-11-23)',
  })
  .meta({ description: 'ISO 8601 date-time with offset (2026-11-23T10:00:00Z) or date (2026-11-23: midnight at the program UTC offset for reports)' });

/** An ISO instant, or a date (YYYY-MM-DD) meaning its midnight at the given UTC offset (the program's). */
export function instantMs(value: string, utcOffsetMinutes = 0): number {
  return value.length === 10 ? Date.parse(`${value}T00:00:00Z`) - utcOffsetMinutes * 60_000 : Date.parse(value);
}

export const MEMBER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export const memberIdParam = z.string().min(1).max(64).regex(MEMBER_ID_PATTERN, 'member id may hold only letters, digits, "_" and "-"');

/** True when `data` is exactly `{ memberId: <a valid member id> }` (what memberParams accepts unchanged). */
export function isMemberParams(data: unknown): boolean {
  if (typeof data !== 'object' || data === null) return false;
  let keys = 0;
  for (const key in data) {
    if (key !== 'memberId') return false;
    keys += 1;
  }
  const memberId = (data as { memberId?: unknown }).memberId;
  return keys === 1 && typeof memberId === 'string' && MEMBER_ID_PATTERN.test(memberId);
}

/** Path parameters `{ memberId }`: checked with a regular expression on the hot path, zod names what is wrong. */
export const memberParams = withFastCheck(z.object({ memberId: memberIdParam }).strict(), isMemberParams);

/** True for an empty object: a querystring with no parameters, accepted unchanged by any all-optional schema. */
export function isEmptyObject(data: unknown): boolean {
  if (typeof data !== 'object' || data === null) return false;
  for (const _key in data) return false;
  return true;
}
