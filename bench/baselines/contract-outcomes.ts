import { unpack } from 'msgpackr';
import { loadProgramFile } from '../../src/config/program-file.js';
import { applyEvent, compileProgram, unlimitedBudgets, validateEvent, type MemberState } from '../../src/domain/index.js';
import { payloadOf, type Spool } from '../generator/spool.js';

/**
 * The outcome messages the engine's contract publishes for the bench's own
 * events, for the transport-ceiling baseline: the pure domain decides the
 * first chunk of the spool (states in a Map, no budget limits), and each
 * event's outcomes are kept as [kind, JSON payload]. The ceiling pass then
 * publishes, for the i-th consumed message, the outcomes of sample event
 * i mod n: the same count per event and the same payloads as the engine's.
 */
export interface OutcomeSample {
  /** Per sampled event: its outcomes as [kind, JSON payload]. */
  readonly events: readonly (readonly (readonly [kind: string, payload: string])[])[];
  readonly outcomesPerEvent: number;
  readonly meanPayloadBytes: number;
}

export function sampleOutcomes(spool: Spool, programFile: string, eventsMax = 65_536): OutcomeSample {
  const program = compileProgram(loadProgramFile(programFile));
  const states = new Map<string, MemberState>();
  const events: (readonly [string, string])[][] = [];
  let outcomes = 0;
  let bytes = 0;
  const chunk = spool.readChunk(0);
  const count = Math.min(chunk.count, eventsMax);
  for (let position = 0; position < count; position++) {
    const payload = payloadOf(chunk, position);
    const decoded = spool.encoding === 'json' ? JSON.parse(Buffer.from(payload).toString('utf8')) : unpack(payload);
    const validation = validateEvent(decoded);
    if (!validation.ok) continue;
    const { event, occurredAtMs } = validation;
    const decision = applyEvent(states.get(event.memberId), event, occurredAtMs, program, { budgets: unlimitedBudgets });
    if (decision.state !== undefined) states.set(event.memberId, decision.state);
    const messages = decision.outcomes.map((outcome) => [outcome.kind, JSON.stringify(outcome)] as const);
    for (const [, json] of messages) bytes += json.length;
    outcomes += messages.length;
    events.push(messages);
  }
  if (events.length === 0) throw new Error('the spool\'s first chunk holds no valid event to sample outcomes from');
  return { events, outcomesPerEvent: outcomes / events.length, meanPayloadBytes: outcomes === 0 ? 0 : bytes / outcomes };
}
