import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pack, unpack } from 'msgpackr';
import { loadProgramFile } from '../../src/config/program-file.js';
import {
  applyEvent,
  compileProgram,
  createMemoryBudgets,
  globalBudgetLimits,
  validateEvent,
  type CompiledProgram,
  type LoyaltyEvent,
  type MemberState,
} from '../../src/domain/index.js';
import { DEFAULT_GENERATOR_OPTIONS, EVENT_KINDS, EventGenerator, type EventKind } from '../generator/events.js';
import { programModelOf } from '../generator/program-model.js';

/**
 * Domain micro-benchmark: the CPU cost of the pure rules core per event, with
 * no transport, store or actor around it.
 *
 * Events come from the bench generator (Zipf members, the standard mix of
 * purchases, returns of earlier orders, redemptions and activities, the
 * default Cyber Week clock), go through msgpack once (the engine's default
 * encoding, so validateEvent sees decoded values as the actor does), and are
 * then applied in order with the members' states kept in a Map, as an actor
 * does. Each pass starts from empty states and fresh global budgets.
 *
 *   npx tsx bench/domain/apply.ts [--events N] [--members N] [--program PATH] [--passes N] [--seed N]
 *
 * Three figures per pass, each the median of the passes after a warm-up:
 * validateEvent + applyEvent per event (what the actor spends on the rules),
 * applyEvent alone (events validated beforehand), validateEvent alone; each
 * in wall time (µs/event, events/s) and in the process's CPU time (all its
 * threads, GC helpers included), which stays meaningful on a busy machine
 * where the wall time also counts waiting for a core. Every timed run starts
 * from a fully collected heap and pays for its own garbage only. The best pass is shown
 * too: the steadiest figure for comparing two builds on a busy machine.
 *
 * A program that does not enroll automatically gets an enroll event before
 * each member's first event (on top of --events). The last line is JSON with
 * the figures. `digest` is a hash of every validation, every decision and
 * every final state: the same options must give the same digest before and
 * after a change to the domain that claims not to change behaviour.
 */

const USAGE = `Usage: npx tsx bench/domain/apply.ts [options]
  --events N     events per pass (default 100000)
  --members N    members, Zipf(1) activity (default 100000)
  --program P    program file (default config/programs/retail.yaml)
  --passes N     measured passes; the median is reported (default 5)
  --warmup N     unmeasured passes first (default 1)
  --seed N       generator seed (default 1)
  --mix LIST     kind=weight,... (default purchase=90,return=5,redemption=3,activity=2;
                 kinds the program cannot take are dropped)
  --no-digest    skip the digest of decisions and states`;

interface Options {
  events: number;
  members: number;
  program: string;
  passes: number;
  warmup: number;
  seed: number;
  mix: Record<EventKind, number>;
  digest: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      events: { type: 'string', default: '100000' },
      members: { type: 'string', default: '100000' },
      program: { type: 'string', default: 'config/programs/retail.yaml' },
      passes: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      seed: { type: 'string', default: '1' },
      mix: { type: 'string', default: 'purchase=90,return=5,redemption=3,activity=2' },
      'no-digest': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const integer = (name: string, text: string, min: number): number => {
    const value = Number(text.replace(/_/g, ''));
    if (!Number.isInteger(value) || value < min) {
      console.error(`--${name} must be an integer >= ${min}, got ${text}\n${USAGE}`);
      process.exit(2);
    }
    return value;
  };
  const mix: Record<EventKind, number> = { purchase: 0, return: 0, redemption: 0, activity: 0 };
  for (const part of values.mix.split(',')) {
    const [kind, weight] = part.split('=');
    if (!(EVENT_KINDS as readonly string[]).includes(kind ?? '') || !(Number(weight) >= 0)) {
      console.error(`--mix: bad entry ${part}\n${USAGE}`);
      process.exit(2);
    }
    mix[kind as EventKind] = Number(weight);
  }
  return {
    events: integer('events', values.events, 1),
    members: integer('members', values.members, 1),
    program: values.program,
    passes: integer('passes', values.passes, 1),
    warmup: integer('warmup', values.warmup, 0),
    seed: integer('seed', values.seed, 0),
    mix,
    digest: !values['no-digest'],
  };
}

const options = parseOptions(process.argv.slice(2));
const programPath = resolve(options.program);
const program = loadProgramFile(programPath);
const compiled = compileProgram(program);
const model = programModelOf(program);
const notes: string[] = [];
if (model.returnWindowDays === null && options.mix.return > 0) notes.push('no returns: the program takes none');
if (model.rewards.length === 0 && options.mix.redemption > 0) notes.push('no redemptions: no reward every tier may redeem');
if (model.activities.length === 0 && options.mix.activity > 0) notes.push('no activities: the program rewards none');
const mix = {
  purchase: options.mix.purchase,
  return: model.returnWindowDays === null ? 0 : options.mix.return,
  redemption: model.rewards.length === 0 ? 0 : options.mix.redemption,
  activity: model.activities.length === 0 ? 0 : options.mix.activity,
};

// Generate, then msgpack round trip: validateEvent gets what the actor's decoder gives it.
const generateStarted = performance.now();
const generator = new EventGenerator({
  ...DEFAULT_GENERATOR_OPTIONS,
  seed: options.seed,
  runId: 'd',
  members: options.members,
  mix,
  count: options.events,
  program: model,
});
// A program without automatic enrollment refuses unknown members: each member is enrolled just before their first event.
const enrollFirst = !program.membership.autoEnroll;
const enrolled = new Set<string>();
const decoded: unknown[] = [];
for (let index = 0; index < options.events; index++) {
  const event = generator.next().event;
  if (enrollFirst && !enrolled.has(event.memberId)) {
    enrolled.add(event.memberId);
    decoded.push(unpack(pack({ id: `enroll-${event.memberId}`, memberId: event.memberId, type: 'enroll', occurredAt: event.occurredAt })));
  }
  decoded.push(unpack(pack(event)));
}
if (enrollFirst) notes.push(`the program does not enroll automatically: ${enrolled.size} enroll events added`);
const generateMs = performance.now() - generateStarted;

// Validated once up front for the applyEvent-only figure (and to refuse a broken load).
const events: LoyaltyEvent[] = new Array(decoded.length);
const times: number[] = new Array(decoded.length);
for (let index = 0; index < decoded.length; index++) {
  const validation = validateEvent(decoded[index]);
  if (!validation.ok) throw new Error(`generated event ${index} is invalid: ${validation.reason}`);
  events[index] = validation.event;
  times[index] = validation.occurredAtMs;
}

const limits = globalBudgetLimits(program);
const freshPorts = () => ({ budgets: createMemoryBudgets(limits) });

/** applyEvent over every event, states in a Map; returns a value the optimiser cannot drop. */
function applyAll(compiledProgram: CompiledProgram): number {
  const states = new Map<string, MemberState>();
  const ports = freshPorts();
  let outcomes = 0;
  for (let index = 0; index < events.length; index++) {
    const event = events[index]!;
    const decision = applyEvent(states.get(event.memberId), event, times[index]!, compiledProgram, ports);
    if (decision.state !== undefined) states.set(event.memberId, decision.state);
    outcomes += decision.outcomes.length;
  }
  return outcomes + states.size;
}

/** validateEvent then applyEvent per event, as the actor does after decoding. */
function validateAndApplyAll(compiledProgram: CompiledProgram): number {
  const states = new Map<string, MemberState>();
  const ports = freshPorts();
  let outcomes = 0;
  for (let index = 0; index < decoded.length; index++) {
    const validation = validateEvent(decoded[index]);
    if (!validation.ok) throw new Error(validation.reason);
    const event = validation.event;
    const decision = applyEvent(states.get(event.memberId), event, validation.occurredAtMs, compiledProgram, ports);
    if (decision.state !== undefined) states.set(event.memberId, decision.state);
    outcomes += decision.outcomes.length;
  }
  return outcomes + states.size;
}

function validateAll(): number {
  let ok = 0;
  for (let index = 0; index < decoded.length; index++) if (validateEvent(decoded[index]).ok) ok += 1;
  return ok;
}

/** A hash of every decision (state changes aside: ledger, outcomes, budget usage) and of every final state, plus counts. */
function digestRun(): { digest: string; accepted: number; rejected: Record<string, number>; ledgerEntries: number; outcomes: number; members: number } {
  const hash = createHash('sha256');
  const states = new Map<string, MemberState>();
  const ports = freshPorts();
  const rejected: Record<string, number> = {};
  let accepted = 0;
  let ledgerEntries = 0;
  let outcomes = 0;
  for (let index = 0; index < decoded.length; index++) {
    const validation = validateEvent(decoded[index]);
    hash.update(JSON.stringify(validation));
    if (!validation.ok) continue;
    const event = validation.event;
    const decision = applyEvent(states.get(event.memberId), event, validation.occurredAtMs, compiled, ports);
    hash.update(JSON.stringify([decision.ledger, decision.outcomes, decision.budgetUsage ?? null]));
    if (decision.state !== undefined) states.set(event.memberId, decision.state);
    ledgerEntries += decision.ledger.length;
    outcomes += decision.outcomes.length;
    const refusal = decision.outcomes.find((outcome) => outcome.kind === 'rejected');
    if (refusal === undefined) accepted += 1;
    else rejected[refusal.code] = (rejected[refusal.code] ?? 0) + 1;
  }
  for (const [memberId, state] of states) hash.update(memberId).update(JSON.stringify(state));
  return { digest: hash.digest('hex').slice(0, 16), accepted, rejected, ledgerEntries, outcomes, members: states.size };
}

// A full collection before each timed run, so that no run pays for the garbage of the one before it.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** Wall time and CPU time (every thread of the process: the GC's helpers too) of one run, from a collected heap. */
function timed(run: () => number): { ms: number; cpuMs: number; sink: number } {
  collectGarbage();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const sink = run();
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000, sink };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const facts = options.digest ? digestRun() : null;
let sink = 0;
for (let pass = 0; pass < options.warmup; pass++) {
  sink += validateAndApplyAll(compiled);
  sink += applyAll(compiled);
  sink += validateAll();
}
const totalMs: number[] = [];
const applyMs: number[] = [];
const validateMs: number[] = [];
const totalCpuMs: number[] = [];
const applyCpuMs: number[] = [];
const validateCpuMs: number[] = [];
for (let pass = 0; pass < options.passes; pass++) {
  const total = timed(() => validateAndApplyAll(compiled));
  const apply = timed(() => applyAll(compiled));
  const validate = timed(validateAll);
  sink += total.sink + apply.sink + validate.sink;
  totalMs.push(total.ms);
  applyMs.push(apply.ms);
  validateMs.push(validate.ms);
  totalCpuMs.push(total.cpuMs);
  applyCpuMs.push(apply.cpuMs);
  validateCpuMs.push(validate.cpuMs);
  process.stderr.write(
    `pass ${pass + 1}/${options.passes}: validate+apply ${((total.ms * 1000) / events.length).toFixed(2)} µs/event, ` +
      `apply ${((apply.ms * 1000) / events.length).toFixed(2)}, validate ${((validate.ms * 1000) / events.length).toFixed(2)} ` +
      `(CPU ${((total.cpuMs * 1000) / events.length).toFixed(2)}, ${((apply.cpuMs * 1000) / events.length).toFixed(2)}, ${((validate.cpuMs * 1000) / events.length).toFixed(2)})\n`,
  );
}

const perEvent = (ms: number) => Number(((ms * 1000) / events.length).toFixed(3));
const totalUs = perEvent(median(totalMs));
const applyUs = perEvent(median(applyMs));
const validateUs = perEvent(median(validateMs));
const totalCpuUs = perEvent(median(totalCpuMs));
const applyCpuUs = perEvent(median(applyCpuMs));
const validateCpuUs = perEvent(median(validateCpuMs));
// The best pass: on a busy machine the least disturbed one, steadier than the median for comparing two builds.
const best = {
  usPerEvent: perEvent(Math.min(...totalMs)),
  applyUsPerEvent: perEvent(Math.min(...applyMs)),
  validateUsPerEvent: perEvent(Math.min(...validateMs)),
  cpuUsPerEvent: perEvent(Math.min(...totalCpuMs)),
  applyCpuUsPerEvent: perEvent(Math.min(...applyCpuMs)),
  validateCpuUsPerEvent: perEvent(Math.min(...validateCpuMs)),
};
const byKind: Record<string, number> = {};
for (const event of events) byKind[event.type] = (byKind[event.type] ?? 0) + 1;

console.log(`program ${program.id} (${options.program}), ${events.length.toLocaleString('en-US')} events, ${options.members.toLocaleString('en-US')} members, seed ${options.seed}`);
console.log(`  mix: ${Object.entries(byKind).map(([kind, count]) => `${kind} ${count}`).join(', ')}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`);
if (facts !== null) {
  const refused = Object.entries(facts.rejected).map(([code, count]) => `${code} ${count}`).join(', ');
  console.log(`  accepted ${facts.accepted}, refused ${refused || 'none'}; ${facts.ledgerEntries} ledger entries, ${facts.outcomes} outcomes, ${facts.members} members; digest ${facts.digest}`);
}
console.log(`  median of ${options.passes} passes after ${options.warmup} warm-up passes (generation ${(generateMs / 1000).toFixed(1)} s):`);
const row = (label: string, us: number, cpuUs: number) =>
  `  ${label.padEnd(27)} ${us.toFixed(2).padStart(7)} µs/event  ${Math.round(1e6 / us).toLocaleString('en-US').padStart(10)} events/s   CPU ${cpuUs.toFixed(2).padStart(7)} µs/event`;
console.log(row('validateEvent + applyEvent', totalUs, totalCpuUs));
console.log(row('applyEvent only', applyUs, applyCpuUs));
console.log(row('validateEvent only', validateUs, validateCpuUs));
console.log(`  best pass: ${best.usPerEvent.toFixed(2)} / ${best.applyUsPerEvent.toFixed(2)} / ${best.validateUsPerEvent.toFixed(2)} µs/event (CPU ${best.cpuUsPerEvent.toFixed(2)} / ${best.applyCpuUsPerEvent.toFixed(2)} / ${best.validateCpuUsPerEvent.toFixed(2)})`);
console.log(
  JSON.stringify({
    bench: 'domain-apply',
    program: program.id,
    programFile: options.program,
    events: events.length,
    members: options.members,
    seed: options.seed,
    passes: options.passes,
    warmupPasses: options.warmup,
    byKind,
    usPerEvent: totalUs,
    eventsPerSecond: Math.round(1e6 / totalUs),
    applyUsPerEvent: applyUs,
    applyEventsPerSecond: Math.round(1e6 / applyUs),
    validateUsPerEvent: validateUs,
    cpuUsPerEvent: totalCpuUs,
    applyCpuUsPerEvent: applyCpuUs,
    validateCpuUsPerEvent: validateCpuUs,
    best,
    passesMs: { validateAndApply: totalMs.map(Math.round), apply: applyMs.map(Math.round), validate: validateMs.map(Math.round) },
    ...(facts === null ? {} : { digest: facts.digest, accepted: facts.accepted, rejected: facts.rejected, ledgerEntries: facts.ledgerEntries, outcomes: facts.outcomes }),
    node: process.version,
    sink: sink % 7,
  }),
);
