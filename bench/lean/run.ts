/**
 * The lean build: the engine's per-event work (bench/lean/actor-thread.ts says
 * what it does and leaves out) with the least machinery around it, run on a
 * fresh nats-server over the bench's own load, beside the transport ceiling
 * of the same contract, to measure how far the engine's design is from what
 * the same work costs at its leanest on this machine (issue 12's limit).
 *
 *   npx tsx bench/lean/run.ts [--events 200000] [--members 100000] [--batch 1024]
 *                             [--actors 2] [--program config/programs/retail.yaml]
 *                             [--outcome-messages outcome|batch]
 *
 * Main thread: one durable pull consumer (ack policy all), messages routed by
 * the member's partition into one transferable batch buffer per actor (the
 * engine's BatchWriter), at most 4 batches in flight per actor, ack-all
 * through the engine's AckTracker as each batch commits. The rate is from
 * the first message consumed until the consumer's ack floor covers them all
 * and every outcome is acknowledged by the outcome stream. At the end the
 * spendable balance of every member is checked against a sequential replay
 * of the same events through the pure domain.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, StorageType, type JsMsg } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { unpack } from 'msgpackr';
import { Piscina } from 'piscina';
import { loadProgramFile } from '../../src/config/program-file.js';
import { applyEvent, compileProgram, unlimitedBudgets, validateEvent, type MemberState } from '../../src/domain/index.js';
import { AckTracker } from '../../src/routing/ack-tracker.js';
import { BatchWriter, Encoding } from '../../src/routing/batch-buffer.js';
import { actorOfPartition, partitionOf } from '../../src/routing/partitioner.js';
import { DEFAULT_GENERATOR_OPTIONS, EventGenerator } from '../generator/events.js';
import { programModelOf } from '../generator/program-model.js';
import { encodeEvent } from '../generator/spool.js';
import { startBenchNatsServer } from '../harness/nats-server.js';
import { machineBusySeconds, ProcessSampler, readMachineTicks } from '../measure/process-sampler.js';
import { cpuByRole, threadCpu } from '../measure/threads.js';
import type { LeanActorData, LeanBatchReply, LeanFinalReply } from './actor-thread.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    members: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '1024' },
    actors: { type: 'string', default: '2' },
    program: { type: 'string', default: 'config/programs/retail.yaml' },
    /** Batches queued or running per actor (the engine's default). */
    'in-flight': { type: 'string', default: '4' },
    /** 'outcome' (one JetStream message per outcome, the contract) or 'batch' (one per batch). */
    'outcome-messages': { type: 'string', default: 'outcome' },
    /** The actor threads' young generation in MiB (the engine's default 64; 0 = V8's default). */
    'young-mb': { type: 'string', default: '64' },
  },
});
const events = Number(values.events);
const batchSize = Number(values.batch);
const actors = Number(values.actors);
const inFlightMax = Number(values['in-flight']);
const programFile = values.program!;
const outcomeMessages = values['outcome-messages'] as 'outcome' | 'batch';
if (outcomeMessages !== 'outcome' && outcomeMessages !== 'batch') throw new Error(`--outcome-messages must be outcome or batch, not ${String(outcomeMessages)}`);
const partitions = 64;
const STREAM = 'LEAN_TX';
const OUTCOMES = 'LEAN_OUTCOMES';

const programDefinition = loadProgramFile(programFile);
const generator = new EventGenerator({ ...DEFAULT_GENERATOR_OPTIONS, runId: 'lean', members: Number(values.members), count: events, program: programModelOf(programDefinition) });
const load: { memberId: string; payload: Uint8Array }[] = [];
for (let index = 0; index < events; index++) {
  const { event } = generator.next();
  load.push({ memberId: event.memberId, payload: encodeEvent(event, 'msgpack') });
}

const server = await startBenchNatsServer();
const dataDir = mkdtempSync(join(tmpdir(), 'loyalty-lean-'));
const pools: Piscina[] = [];
try {
  const nc = await connect({ servers: server.url, name: 'lean-main' });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await jsm.streams.add({ name: STREAM, subjects: ['loyalty.tx.*'], storage: StorageType.File });
  await jsm.streams.add({ name: OUTCOMES, subjects: ['loyalty.outcome.>'], storage: StorageType.File, duplicate_window: 120_000_000_000 });
  for (let index = 0; index < load.length; index++) {
    nc.publish(`loyalty.tx.${load[index]!.memberId}`, load[index]!.payload);
    if (index % 5_000 === 0) await nc.flush();
  }
  await nc.flush();
  while ((await jsm.streams.info(STREAM)).state.messages < events) await new Promise((resolve) => setTimeout(resolve, 100));
  await jsm.consumers.add(STREAM, { durable_name: 'lean', ack_policy: AckPolicy.All, deliver_policy: DeliverPolicy.All, max_ack_pending: 50_000, ack_wait: 60_000_000_000 });

  // The actor threads (one Piscina pool of one thread each, with the engine's pool options), each with its own LMDB environment and NATS connection.
  for (let actor = 0; actor < actors; actor++) {
    const workerData: LeanActorData = { actorIndex: actor, dataDir: join(dataDir, `a${actor}`), natsUrl: server.url, programFile, partitions, outcomeMessages };
    pools.push(
      new Piscina({
        filename: new URL('./actor-thread.ts', import.meta.url).href,
        minThreads: 1,
        maxThreads: 1,
        concurrentTasksPerWorker: inFlightMax,
        atomics: 'disabled',
        idleTimeout: Number.POSITIVE_INFINITY,
        workerData,
        recordTiming: false,
        resourceLimits: Number(values['young-mb']) > 0 ? { maxYoungGenerationSizeMb: Number(values['young-mb']) } : {},
      }),
    );
  }

  const writers = Array.from({ length: actors }, () => new BatchWriter(256 * 1024));
  const queued: ArrayBuffer[][] = Array.from({ length: actors }, () => []);
  const running = new Array<number>(actors).fill(0);
  const tracker = new AckTracker<JsMsg>();
  const totals = { committed: 0, outcomes: 0, outcomeMessages: 0, invalid: 0, duplicates: 0, batches: 0 };
  let consumed = 0;
  let done: () => void = () => undefined;
  const allCommitted = new Promise<void>((resolve) => (done = resolve));
  const pump = (actor: number): void => {
    while (running[actor]! < inFlightMax && queued[actor]!.length > 0) {
      const buffer = queued[actor]!.shift()!;
      running[actor]! += 1;
      (pools[actor]!.run(buffer, { transferList: [buffer] }) as Promise<LeanBatchReply>).then(
        (reply) => committed(reply, actor),
        (error: unknown) => {
          console.error(`lean actor ${actor} failed: ${String(error)}`);
          process.exit(1);
        },
      );
    }
  };
  const seal = (actor: number): void => {
    if (writers[actor]!.count === 0) return;
    queued[actor]!.push(writers[actor]!.finish());
    pump(actor);
  };
  const committed = (reply: LeanBatchReply, actor: number): void => {
    running[actor]! -= 1;
    totals.batches += 1;
    totals.committed += reply.sequences.length;
    totals.outcomes += reply.outcomes;
    totals.outcomeMessages += reply.outcomeMessages;
    totals.invalid += reply.invalid;
    totals.duplicates += reply.duplicates;
    let ack: JsMsg | undefined;
    for (const sequence of reply.sequences) ack = tracker.complete(sequence) ?? ack;
    ack?.ack();
    if (totals.committed >= events) done();
    // An idle actor takes what is buffered for it at once (the engine's batches are sealed the same way).
    if (running[actor] === 0) seal(actor);
    pump(actor);
  };
  const idleSeal = setInterval(() => {
    for (let actor = 0; actor < actors; actor++) if (running[actor]! < inFlightMax && queued[actor]!.length === 0) seal(actor);
  }, 2);

  const sampler = new ProcessSampler(server.pid);
  sampler.start();
  const threadsStart = threadCpu(process.pid);
  const cpuStart = process.cpuUsage();
  const machineStart = readMachineTicks();
  const started = performance.now();
  const consumer = await js.consumers.get(STREAM, 'lean');
  const messages = await consumer.consume({ max_messages: 10_000 });
  void (async () => {
    for await (const message of messages) {
      consumed += 1;
      const subject = message.subject;
      const memberId = subject.slice(subject.lastIndexOf('.') + 1);
      const actor = actorOfPartition(partitionOf(memberId, partitions), actors);
      tracker.track(message.seq, message);
      writers[actor]!.append(message.seq, 0, Encoding.Msgpack, memberId, message.data);
      if (writers[actor]!.count >= batchSize) seal(actor);
      if (consumed >= events) break;
    }
  })();
  await allCommitted;
  clearInterval(idleSeal);
  const results = (await Promise.all(pools.map((pool) => pool.run('final')))) as LeanFinalReply[];
  // The clock stops when the last ack is confirmed and every outcome is stored.
  const info = await jsm.consumers.info(STREAM, 'lean');
  const seconds = (performance.now() - started) / 1000;
  const machineBusy = machineBusySeconds(machineStart, readMachineTicks());
  const cpu = process.cpuUsage(cpuStart);
  const byRole = cpuByRole(process.pid, threadsStart, threadCpu(process.pid));
  const natsUsage = sampler.stop();
  await messages.close();
  const outcomeStream = (await jsm.streams.info(OUTCOMES)).state.messages;
  await nc.close();

  // Check: every member's spendable balance against a sequential replay through the pure domain.
  const program = compileProgram(programDefinition);
  const replay = new Map<string, MemberState>();
  for (const { payload } of load) {
    const validation = validateEvent(unpack(payload));
    if (!validation.ok) continue;
    const decision = applyEvent(replay.get(validation.event.memberId), validation.event, validation.occurredAtMs, program, { budgets: unlimitedBudgets });
    if (decision.state !== undefined) replay.set(validation.event.memberId, decision.state);
  }
  let wrong = 0;
  let checked = 0;
  for (const result of results) {
    for (const memberId in result.balances) {
      checked += 1;
      const expected = replay.get(memberId);
      for (const currency in result.balances[memberId]) if (expected?.currencies[currency]?.spendable !== result.balances[memberId]![currency]) wrong += 1;
    }
  }
  const engineCpuMicros = ((cpu.user + cpu.system) / events);
  const threadMicrosPerEvent = Object.fromEntries(Object.entries(byRole).map(([role, s]) => [role, Math.round((s * 1e7) / events) / 10]));
  const result = {
    bench: 'lean',
    events,
    batchSize,
    actors,
    program: programFile,
    eventsPerSecond: Math.round(events / seconds),
    cpuMicrosPerEvent: Math.round(engineCpuMicros * 10) / 10,
    natsServerCpuMicrosPerEvent: Math.round(((natsUsage.cpuSecondsTotal * 1e6) / events) * 10) / 10,
    machineCpuPercent: machineBusy === null ? null : Math.round((machineBusy / seconds) * 1000) / 10,
    outcomeMessages,
    outcomesPerEvent: Math.round((totals.outcomes / events) * 100) / 100,
    outcomeStreamMessages: outcomeStream,
    batchEventsMean: Math.round(totals.committed / totals.batches),
    ackFloor: info.ack_floor.stream_seq,
    invalid: totals.invalid,
    duplicates: totals.duplicates,
    checkedMembers: checked,
    wrongBalances: wrong,
    correct: wrong === 0 && checked === replay.size && info.ack_floor.stream_seq === events && outcomeStream === totals.outcomeMessages,
    threadMicrosPerEvent,
    actorPhaseMicrosPerEvent: Object.fromEntries(
      Object.keys(results[0]!.phases).map((phase) => [phase, Math.round((results.reduce((sum, r) => sum + r.phases[phase]!, 0) * 1e4) / events) / 10]),
    ),
  };
  console.log(
    `lean: ${result.eventsPerSecond} events/s, ${result.cpuMicrosPerEvent} µs CPU per event (this process, all threads) + nats-server ${result.natsServerCpuMicrosPerEvent} µs; machine ${result.machineCpuPercent} % of one core`,
  );
  console.log(`CPU µs per event by thread: ${Object.entries(threadMicrosPerEvent).map(([role, micros]) => `${role} ${micros}`).join(', ')}`);
  console.log(`actor threads' wall time per event by phase (µs): ${Object.entries(result.actorPhaseMicrosPerEvent).map(([phase, micros]) => `${phase} ${micros}`).join(', ')}`);
  console.log(
    `${result.outcomesPerEvent} outcomes per event (${outcomeStream} messages stored, one per ${outcomeMessages}), batches of ${result.batchEventsMean} events on average; check: ${checked} members, ${wrong} wrong balances, ack floor ${info.ack_floor.stream_seq}/${events}: ${result.correct ? 'PASSED' : 'FAILED'}`,
  );
  console.log(JSON.stringify(result));
  if (!result.correct) process.exitCode = 1;
} finally {
  for (const pool of pools) await pool.destroy();
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
