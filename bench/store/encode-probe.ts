/**
 * Encode probe: what the store's msgpack encoding costs per record kind, on
 * the states and decisions of a domain run (bench generator, retail). No LMDB.
 *
 *   npx tsx bench/store/encode-probe.ts [--events 100000] [--members 100000]
 */
import { parseArgs } from 'node:util';
import { Packr } from 'msgpackr';
import { loadProgramFile } from '../../src/config/program-file.js';
import { applyEvent, compileProgram, validateEvent, type MemberState } from '../../src/domain/index.js';
import { memberChanges, memberRecords } from '../../src/store/member-records.js';
import { encodeLedger } from '../../src/store/ledger-codec.js';
import { DEFAULT_GENERATOR_OPTIONS, EventGenerator } from '../generator/events.js';
import { programModelOf } from '../generator/program-model.js';

const { values } = parseArgs({ options: { events: { type: 'string', default: '100000' }, members: { type: 'string', default: '100000' }, program: { type: 'string', default: 'config/programs/retail.yaml' } } });
const program = loadProgramFile(values.program!);
const compiled = compileProgram(program);
const events = Number(values.events);
const generator = new EventGenerator({ ...DEFAULT_GENERATOR_OPTIONS, runId: 'probe', members: Number(values.members), count: events, program: programModelOf(program) });
const ports = { budgets: { tryConsume: (_id: string, points: number) => points, release: () => undefined } };
const states = new Map<string, MemberState>();
const packr = new Packr({ useRecords: false });
const sizes: Record<string, { n: number; bytes: number; ms: number }> = {};
const add = (kind: string, value: unknown): void => {
  const started = performance.now();
  const bytes = packr.pack(value).length;
  const entry = (sizes[kind] ??= { n: 0, bytes: 0, ms: 0 });
  entry.n += 1;
  entry.bytes += bytes;
  entry.ms += performance.now() - started;
};
for (let index = 0; index < events; index++) {
  const { event: raw } = generator.next();
  const validation = validateEvent(JSON.parse(JSON.stringify(raw)));
  if (!validation.ok) continue;
  const base = states.get(validation.event.memberId);
  const decision = applyEvent(base, validation.event, validation.occurredAtMs, compiled, ports);
  if (decision.state !== undefined) states.set(decision.state.memberId, decision.state);
  if (index < events / 2 || decision.state === undefined) continue;
  const changes = memberChanges(decision.state, base, 0);
  add('core (map)', changes.core);
  const records = memberRecords(decision.state, base, 0);
  add(Array.isArray(records.core) ? 'core (row)' : 'core (row fell back to map)', records.core);
  for (const [kind, , item] of changes.puts) add(`item ${kind}`, item);
  if (decision.ledger.length > 0) add('ledger', encodeLedger(decision.ledger));
  add('outcomes', decision.outcomes.map((o) => JSON.stringify(o)));
}
const measured = events - Math.ceil(events / 2);
for (const [kind, { n, bytes, ms }] of Object.entries(sizes).sort((a, b) => b[1].ms - a[1].ms)) {
  console.log(`${kind.padEnd(28)} ${String(n).padStart(7)} records  ${(bytes / n).toFixed(0).padStart(6)} B each  ${((ms * 1000) / measured).toFixed(2).padStart(6)} µs/event`);
}

// Micro: one large core, packed repeatedly, as built and as a fresh plain copy.
{
  let biggest: MemberState | undefined;
  for (const state of states.values()) if (biggest === undefined || state.eventCount > biggest.eventCount) biggest = state;
  const core = memberChanges(biggest!, undefined, 0).core;
  const plain = JSON.parse(JSON.stringify(core));
  for (const [name, value] of [['core as built', core], ['core plain copy', plain]] as const) {
    for (let i = 0; i < 2000; i++) packr.pack(value);
    const started = performance.now();
    for (let i = 0; i < 20000; i++) packr.pack(value);
    console.log(`${name}: ${packr.pack(value).length} B, ${(((performance.now() - started) * 1000) / 20000).toFixed(2)} µs per pack`);
  }
  let typical: MemberState | undefined;
  for (const state of states.values()) if (state.eventCount === 3) { typical = state; break; }
  const small = memberChanges(typical!, undefined, 0).core;
  for (let i = 0; i < 2000; i++) packr.pack(small);
  const started = performance.now();
  for (let i = 0; i < 20000; i++) packr.pack(small);
  console.log(`core of a 3-event member: ${packr.pack(small).length} B, ${(((performance.now() - started) * 1000) / 20000).toFixed(2)} µs per pack`);
  console.log(JSON.stringify(small).slice(0, 1500));
}
