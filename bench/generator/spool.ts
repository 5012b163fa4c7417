import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { open as openAsync } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pack } from 'msgpackr';
import { EVENT_KINDS, EventGenerator, type EventKind, type GeneratorOptions, type GeneratorStats } from './events.js';

/**
 * A load generated in chunks into a spool file before any clock starts, then
 * read back chunk by chunk by whoever needs the events (the baselines, the
 * engine run's publisher, the correctness check). Memory is bounded by one or
 * two chunks whatever the number of events, and every consumer sees exactly
 * the bytes the engine was sent.
 *
 * Chunk layout (little endian): count u32, payload bytes u32, then count ×
 * member rank u32, count × kind u8, (count + 1) × payload offset u32 (relative
 * to the chunk's payloads), then the payloads back to back.
 */

export type Encoding = 'json' | 'msgpack';
export const ENCODINGS: readonly Encoding[] = ['json', 'msgpack'];
export const DEFAULT_CHUNK_EVENTS = 65_536;

export interface ChunkIndex {
  /** Index of the chunk's first event in the load. */
  start: number;
  count: number;
  fileOffset: number;
  byteLength: number;
}

export interface SpoolChunk {
  start: number;
  count: number;
  memberRanks: Uint32Array;
  /** Index into EVENT_KINDS. */
  kinds: Uint8Array;
  /** Payload i of the chunk is payloads[offsets[i] .. offsets[i + 1]). */
  offsets: Uint32Array;
  payloads: Uint8Array;
}

export interface SpoolFacts {
  count: number;
  encoding: Encoding;
  payloadBytes: number;
  distinctMembers: number;
  /** Share of events of the most active member. */
  hottestMemberShare: number;
  generateMs: number;
  eventsPerSecond: number;
  stats: GeneratorStats;
}

export function encodeEvent(event: object, encoding: Encoding): Uint8Array {
  return encoding === 'json' ? Buffer.from(JSON.stringify(event), 'utf8') : pack(event);
}

export function payloadOf(chunk: SpoolChunk, index: number): Uint8Array {
  return chunk.payloads.subarray(chunk.offsets[index]!, chunk.offsets[index + 1]!);
}

export class Spool {
  readonly path: string;
  readonly generator: GeneratorOptions;
  readonly encoding: Encoding;
  readonly chunks: readonly ChunkIndex[];
  readonly facts: SpoolFacts;
  readonly subjectPrefix: string;
  private readonly subjects: (string | undefined)[];

  constructor(path: string, generator: GeneratorOptions, encoding: Encoding, chunks: readonly ChunkIndex[], facts: SpoolFacts, subjectPrefix: string) {
    this.path = path;
    this.generator = generator;
    this.encoding = encoding;
    this.chunks = chunks;
    this.facts = facts;
    this.subjectPrefix = subjectPrefix;
    this.subjects = new Array<string | undefined>(generator.members);
  }

  get count(): number {
    return this.facts.count;
  }

  /** `loyalty.tx.<memberId>` of a member rank, cached. */
  subjectOfRank(rank: number): string {
    let subject = this.subjects[rank];
    if (subject === undefined) {
      subject = `${this.subjectPrefix}.${this.generator.memberPrefix}${rank}`;
      this.subjects[rank] = subject;
    }
    return subject;
  }

  memberIdOfRank(rank: number): string {
    return `${this.generator.memberPrefix}${rank}`;
  }

  /** Reads one chunk synchronously. */
  readChunk(chunkNumber: number): SpoolChunk {
    const index = this.chunks[chunkNumber];
    if (index === undefined) throw new RangeError(`no chunk ${chunkNumber}`);
    const buffer = Buffer.allocUnsafe(index.byteLength);
    const fd = openSync(this.path, 'r');
    try {
      let read = 0;
      while (read < index.byteLength) {
        const got = readSync(fd, buffer, read, index.byteLength - read, index.fileOffset + read);
        if (got === 0) throw new Error(`spool ${this.path} ends early`);
        read += got;
      }
    } finally {
      closeSync(fd);
    }
    return decodeChunk(buffer, index);
  }

  /** Every chunk in order, reading the next one in the background while the caller works on the current one. */
  async *readAll(): AsyncGenerator<SpoolChunk> {
    const handle = await openAsync(this.path, 'r');
    try {
      const readAt = async (chunkNumber: number): Promise<SpoolChunk> => {
        const index = this.chunks[chunkNumber]!;
        const buffer = Buffer.allocUnsafe(index.byteLength);
        let read = 0;
        while (read < index.byteLength) {
          const { bytesRead } = await handle.read(buffer, read, index.byteLength - read, index.fileOffset + read);
          if (bytesRead === 0) throw new Error(`spool ${this.path} ends early`);
          read += bytesRead;
        }
        return decodeChunk(buffer, index);
      };
      let next: Promise<SpoolChunk> | undefined = this.chunks.length > 0 ? readAt(0) : undefined;
      for (let chunkNumber = 0; next !== undefined; chunkNumber++) {
        const current = await next;
        next = chunkNumber + 1 < this.chunks.length ? readAt(chunkNumber + 1) : undefined;
        yield current;
      }
    } finally {
      await handle.close();
    }
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }
}

function decodeChunk(buffer: Buffer, index: ChunkIndex): SpoolChunk {
  const count = buffer.readUInt32LE(0);
  const payloadBytes = buffer.readUInt32LE(4);
  if (count !== index.count) throw new Error(`spool chunk at ${index.fileOffset} holds ${count} events, the index says ${index.count}`);
  let position = 8;
  // Copies into aligned typed arrays (the buffer's offset may not be a multiple of 4).
  const memberRanks = new Uint32Array(count);
  for (let event = 0; event < count; event++, position += 4) memberRanks[event] = buffer.readUInt32LE(position);
  const kinds = Uint8Array.from(buffer.subarray(position, position + count));
  position += count;
  const offsets = new Uint32Array(count + 1);
  for (let event = 0; event <= count; event++, position += 4) offsets[event] = buffer.readUInt32LE(position);
  const payloads = buffer.subarray(position, position + payloadBytes);
  if (payloads.length !== payloadBytes || offsets[count] !== payloadBytes) throw new Error(`spool chunk at ${index.fileOffset} is damaged`);
  return { start: index.start, count, memberRanks, kinds, offsets, payloads };
}

export interface WriteSpoolOptions {
  generator: GeneratorOptions;
  encoding: Encoding;
  /** Directory of the spool file (a temp dir of the run). */
  dir: string;
  name?: string;
  chunkEvents?: number;
  subjectPrefix?: string;
  onProgress?: (done: number, total: number) => void;
}

/** Generates the whole load, chunk by chunk, into a spool file. Same options, same file content. */
export function writeSpool(options: WriteSpoolOptions): Spool {
  const { generator: generatorOptions, encoding } = options;
  const count = generatorOptions.count;
  const chunkEvents = options.chunkEvents ?? DEFAULT_CHUNK_EVENTS;
  if (!Number.isInteger(chunkEvents) || chunkEvents < 1) throw new RangeError('chunkEvents must be an integer >= 1');
  const path = join(options.dir, options.name ?? 'load.spool');
  const started = performance.now();
  const generator = new EventGenerator(generatorOptions);
  const eventsPerRank = new Uint32Array(generatorOptions.members);
  const chunks: ChunkIndex[] = [];
  const fd = openSync(path, 'w');
  let fileOffset = 0;
  let payloadBytesTotal = 0;
  try {
    for (let start = 0; start < count; start += chunkEvents) {
      const inChunk = Math.min(chunkEvents, count - start);
      const payloads: Uint8Array[] = [];
      const ranks = Buffer.allocUnsafe(inChunk * 4);
      const kinds = Buffer.allocUnsafe(inChunk);
      const offsets = Buffer.allocUnsafe((inChunk + 1) * 4);
      let used = 0;
      for (let event = 0; event < inChunk; event++) {
        const generated = generator.next();
        const payload = encodeEvent(generated.event, encoding);
        payloads.push(payload);
        ranks.writeUInt32LE(generated.memberRank, event * 4);
        kinds[event] = EVENT_KINDS.indexOf(generated.kind as EventKind);
        offsets.writeUInt32LE(used, event * 4);
        used += payload.length;
        eventsPerRank[generated.memberRank]! += 1;
      }
      offsets.writeUInt32LE(used, inChunk * 4);
      const header = Buffer.allocUnsafe(8);
      header.writeUInt32LE(inChunk, 0);
      header.writeUInt32LE(used, 4);
      const body = Buffer.concat([header, ranks, kinds, offsets, ...payloads]);
      writeAll(fd, body);
      chunks.push({ start, count: inChunk, fileOffset, byteLength: body.length });
      fileOffset += body.length;
      payloadBytesTotal += used;
      options.onProgress?.(start + inChunk, count);
    }
  } finally {
    closeSync(fd);
  }
  let distinctMembers = 0;
  let hottest = 0;
  for (const events of eventsPerRank) {
    if (events > 0) distinctMembers += 1;
    if (events > hottest) hottest = events;
  }
  const generateMs = performance.now() - started;
  const facts: SpoolFacts = {
    count,
    encoding,
    payloadBytes: payloadBytesTotal,
    distinctMembers,
    hottestMemberShare: hottest / count,
    generateMs,
    eventsPerSecond: count / (generateMs / 1000),
    stats: structuredClone(generator.stats),
  };
  return new Spool(path, generatorOptions, encoding, chunks, facts, options.subjectPrefix ?? 'loyalty.tx');
}

function writeAll(fd: number, buffer: Buffer): void {
  let written = 0;
  while (written < buffer.length) written += writeSync(fd, buffer, written, buffer.length - written);
}
