import { performance } from 'node:perf_hooks';
import { pack } from 'msgpackr';
import { EventGenerator, EVENT_KINDS, type EventKind, type GeneratorOptions } from './events.js';

export type Encoding = 'json' | 'msgpack';
export const ENCODINGS: readonly Encoding[] = ['json', 'msgpack'];

/** Pre-generated payloads are held in memory; above this the run is refused rather than swapping. */
export const PAYLOAD_BYTES_MAX = 1536 * 1024 * 1024;

/**
 * A whole load, generated and encoded before any clock starts, so that the
 * generator is never what limits a measurement. Payloads sit back to back in
 * one buffer; per-event facts the correctness check needs sit in typed arrays.
 */
export interface GeneratedLoad {
  readonly options: GeneratorOptions;
  readonly encoding: Encoding;
  readonly count: number;
  /** All payloads back to back; payload i is bytes[offsets[i] .. offsets[i + 1]). */
  readonly bytes: Uint8Array;
  readonly offsets: Float64Array;
  readonly memberRanks: Uint32Array;
  readonly amountsMinor: Float64Array;
  /** Index into EVENT_KINDS. */
  readonly kinds: Uint8Array;
  /** Subject of each member rank (`loyalty.tx.<memberId>`), shared by its events. */
  readonly subjectOfRank: (rank: number) => string;
  readonly distinctMembers: number;
  /** Share of events of the most active member. */
  readonly hottestMemberShare: number;
  readonly generateMs: number;
  readonly eventsPerSecond: number;
}

export interface GenerateLoadOptions {
  generator: GeneratorOptions;
  count: number;
  encoding: Encoding;
  subjectPrefix?: string;
  /** Called every `progressEvery` events. */
  onProgress?: (done: number) => void;
  progressEvery?: number;
}

export function encodeEvent(event: object, encoding: Encoding): Uint8Array {
  return encoding === 'json' ? Buffer.from(JSON.stringify(event), 'utf8') : pack(event);
}

export function generateLoad(options: GenerateLoadOptions): GeneratedLoad {
  const { count, encoding } = options;
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`event count must be an integer >= 1, got ${count}`);
  const subjectPrefix = options.subjectPrefix ?? 'loyalty.tx';
  const started = performance.now();
  const generator = new EventGenerator(options.generator);
  let bytes = Buffer.allocUnsafe(Math.min(PAYLOAD_BYTES_MAX, Math.max(64 * 1024, count * 320)));
  // Doubles, not Uint32: a large load can pass 4 GiB of offsets' range in principle, and 8 bytes per event is cheap.
  const offsets = new Float64Array(count + 1);
  const memberRanks = new Uint32Array(count);
  const amountsMinor = new Float64Array(count);
  const kinds = new Uint8Array(count);
  const eventsPerRank = new Uint32Array(options.generator.members);
  const progressEvery = options.progressEvery ?? 50_000;
  let used = 0;
  for (let index = 0; index < count; index++) {
    const generated = generator.next();
    const payload = encodeEvent(generated.event, encoding);
    if (used + payload.length > bytes.length) {
      const size = Math.min(PAYLOAD_BYTES_MAX, Math.max(bytes.length * 2, used + payload.length));
      if (used + payload.length > size) {
        throw new RangeError(`the pre-generated payloads exceed ${PAYLOAD_BYTES_MAX} bytes; run fewer events`);
      }
      const grown = Buffer.allocUnsafe(size);
      bytes.copy(grown, 0, 0, used);
      bytes = grown;
    }
    bytes.set(payload, used);
    offsets[index] = used;
    used += payload.length;
    memberRanks[index] = generated.memberRank;
    amountsMinor[index] = generated.event.amountMinor;
    kinds[index] = EVENT_KINDS.indexOf(generated.kind as EventKind);
    eventsPerRank[generated.memberRank]! += 1;
    if (options.onProgress !== undefined && (index + 1) % progressEvery === 0) options.onProgress(index + 1);
  }
  offsets[count] = used;
  let distinctMembers = 0;
  let hottest = 0;
  for (const events of eventsPerRank) {
    if (events > 0) distinctMembers += 1;
    if (events > hottest) hottest = events;
  }
  const subjects = new Array<string | undefined>(options.generator.members);
  const subjectOfRank = (rank: number): string => {
    let subject = subjects[rank];
    if (subject === undefined) {
      subject = `${subjectPrefix}.${generator.memberId(rank)}`;
      subjects[rank] = subject;
    }
    return subject;
  };
  const generateMs = performance.now() - started;
  return {
    options: options.generator,
    encoding,
    count,
    bytes: bytes.subarray(0, used),
    offsets,
    memberRanks,
    amountsMinor,
    kinds,
    subjectOfRank,
    distinctMembers,
    hottestMemberShare: hottest / count,
    generateMs,
    eventsPerSecond: count / (generateMs / 1000),
  };
}

export function payloadOf(load: GeneratedLoad, index: number): Uint8Array {
  return load.bytes.subarray(load.offsets[index]!, load.offsets[index + 1]!);
}

export function meanPayloadBytes(load: GeneratedLoad): number {
  return load.bytes.length / load.count;
}
