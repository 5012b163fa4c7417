/**
 * Actor bench: the actor's whole per-event path (decode, validate, domain,
 * LMDB commit and flush) without NATS, on one thread, so its cost per event
 * can be compared across changes even while the machine does other work:
 * it reports CPU time per event (this process, LMDB's write thread
 * included) as well as wall-clock events/s.
 *
 *   npx tsx bench/actor/run.ts [--events 200000] [--members 100000] [--batch 512]
 *                              [--program config/programs/retail.yaml] [--encoding msgpack|json]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Actor } from '../../src/actors/actor.js';
import { loadProgramFile } from '../../src/config/program-file.js';
import { Encoding, type BatchRecord } from '../../src/routing/batch-buffer.js';
import { LmdbStore } from '../../src/store/lmdb.js';
import { subjectsFor } from '../../src/transport/subjects.js';
import { DEFAULT_GENERATOR_OPTIONS, EventGenerator } from '../generator/events.js';
import { programModelOf } from '../generator/program-model.js';
import { encodeEvent } from '../generator/spool.js';
import { cpuByRole, threadCpu } from '../measure/threads.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    members: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '512' },
    program: { type: 'string', default: 'config/programs/retail.yaml' },
    encoding: { type: 'string', default: 'msgpack' },
    'cache-max': { type: 'string', default: '50000' },
    /** Batches in flight (the pool's default is 4): commits overlap the next batch's apply. */
    'in-flight': { type: 'string', default: '4' },
  },
});
const events = Number(values.events);
const batchSize = Number(values.batch);
const encoding = values.encoding === 'json' ? 'json' : 'msgpack';
const program = loadProgramFile(values.program!);
const partitions = 64;

const generator = new EventGenerator({ ...DEFAULT_GENERATOR_OPTIONS, runId: 'actor', members: Number(values.members), count: events, program: programModelOf(program) });
const records: BatchRecord[] = [];
for (let index = 0; index < events; index++) {
  const { event } = generator.next();
  records.push({ streamSequence: index + 1, publishedAtMs: 0, encoding: encoding === 'json' ? Encoding.Json : Encoding.Msgpack, memberId: event.memberId, payload: encodeEvent(event, encoding) });
}

const dataDir = mkdtempSync(join(tmpdir(), 'loyalty-actor-bench-'));
try {
  const store = new LmdbStore({ dataDir, mapSizeBytes: 16 * 1024 ** 3, partitions });
  await store.ensureMeta(partitions, Date.now());
  const actor = new Actor(store, program, {
    actorIndex: 0,
    actors: 1,
    partitions,
    memberCacheMax: Number(values['cache-max']),
    payloadBytesMax: 65_536,
    subjects: subjectsFor('loyalty'),
    bootId: 1,
    ports: { budgets: { tryConsume: (_promotionId: string, points: number) => points, release: () => undefined } },
  });
  // GC pauses of this thread during the run, by kind (the helpers' share shows in the CPU by thread).
  const gcMs = { scavenge: 0, major: 0, other: 0 };
  let measuring = true;
  const gcObserver = new PerformanceObserver((list) => {
    if (!measuring) return;
    for (const entry of list.getEntries()) {
      const kind = ((entry as unknown as { detail?: { kind?: number } }).detail)?.kind;
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) gcMs.scavenge += entry.duration;
      else if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) gcMs.major += entry.duration;
      else gcMs.other += entry.duration;
    }
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const cpuStart = process.cpuUsage();
  const threadsStart = threadCpu(process.pid);
  const started = performance.now();
  let outcomes = 0;
  // Up to 4 batches in flight, as the pool allows by default: commits overlap the next batch's apply.
  const inFlight: Promise<unknown>[] = [];
  for (let offset = 0; offset < records.length; offset += batchSize) {
    inFlight.push(actor.process(records.slice(offset, offset + batchSize)).then((processed) => (outcomes += processed.result.outcomeCount)));
    if (inFlight.length >= Number(values['in-flight'])) await inFlight.shift();
  }
  await Promise.all(inFlight);
  const seconds = (performance.now() - started) / 1000;
  measuring = false;
  gcObserver.disconnect();
  const cpu = process.cpuUsage(cpuStart);
  const byRole = cpuByRole(process.pid, threadsStart, threadCpu(process.pid));
  const threadMicrosPerEvent = Object.fromEntries(Object.entries(byRole).map(([role, seconds]) => [role, Math.round((seconds * 1e6 * 10) / events) / 10]));
  const cpuMicrosPerEvent = (cpu.user + cpu.system) / events;
  const result = {
    events,
    batchSize,
    encoding,
    program: values.program,
    eventsPerSecond: Math.round(events / seconds),
    cpuMicrosPerEvent: Math.round(cpuMicrosPerEvent * 10) / 10,
    outcomesPerEvent: Math.round((outcomes / events) * 100) / 100,
    threadMicrosPerEvent,
    gcPauseMicrosPerEvent: Object.fromEntries(Object.entries(gcMs).map(([kind, ms]) => [kind, Math.round((ms * 1e4) / events) / 10])),
  };
  console.log(`actor: ${result.eventsPerSecond} events/s, ${result.cpuMicrosPerEvent} µs CPU per event (all threads), ${result.outcomesPerEvent} outcomes per event`);
  console.log(`CPU µs per event by thread: ${Object.entries(threadMicrosPerEvent).map(([role, micros]) => `${role} ${micros}`).join(', ')}`);
  console.log(`GC pauses of the actor's thread, µs per event: ${Object.entries(result.gcPauseMicrosPerEvent).map(([kind, micros]) => `${kind} ${micros}`).join(', ')}`);
  console.log(JSON.stringify(result));
  await store.close();
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
