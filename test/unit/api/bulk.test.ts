import { describe, expect, it } from 'vitest';
import { BulkJobs, reportChunks } from '../../../src/api/bulk.js';
import type { ApiContext, EventSubmitter } from '../../../src/api/context.js';
import { ApiError } from '../../../src/api/errors.js';
import { fakeContext, FakeEngine, purchase } from './fake-context.js';

function contextWith(engine: FakeEngine, submitter: EventSubmitter): ApiContext {
  return { ...fakeContext(engine), submitter };
}

const file = (lines: number) => `memberId,direction,points,reason\n${Array.from({ length: lines }, () => 'ann,credit,1,r').join('\n')}\n`;

describe('bulk jobs', () => {
  const engine = new FakeEngine();
  engine.apply(purchase('ann', 'p', 100));

  it('reports lines whose publish failed, and completes with them counted', async () => {
    let calls = 0;
    const submitter: EventSubmitter = {
      submit: async (event) => {
        calls += 1;
        if (calls % 3 === 0) throw new Error('503 no stream');
        return { eventId: event.id, sequence: calls, duplicate: false };
      },
    };
    const jobs = new BulkJobs(contextWith(engine, submitter));
    const { job } = jobs.start(jobs.check(file(9), 'csv'), 'alice');
    await job.done;
    expect(job.status()).toMatchObject({ state: 'completed', outcomesTracked: false, counts: { total: 9, submitted: 6, failed: 3, queued: 0, pending: 0 } });
    const failed = [...job.results(new Set(['failed']))];
    expect(failed).toHaveLength(3);
    expect(failed[0]!.reason).toMatch(/publish failed: 503 no stream/);
    const ndjson = [...reportChunks(job, 'ndjson')].join('');
    expect(ndjson.trim().split('\n')).toHaveLength(9);
  });

  it('ends incomplete when outcomes do not come in time, saying the events may still apply', async () => {
    const submitter: EventSubmitter = {
      submit: async (event) => ({ eventId: event.id, sequence: 1, duplicate: false }),
      trackOutcomes: () => () => undefined,
    };
    const jobs = new BulkJobs(contextWith(engine, submitter), { outcomeWaitMs: 30 });
    const { job } = jobs.start(jobs.check(file(3), 'csv'), 'alice');
    await job.done;
    expect(job.status()).toMatchObject({ state: 'incomplete', counts: { submitted: 3, pending: 3 } });
    expect([...job.results()][0]!.reason).toMatch(/no outcome within 0 s; the event is in the stream and may still be applied/);
  });

  it('bounds running and retained jobs', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const submitter: EventSubmitter = {
      submit: async (event) => {
        await gate;
        return { eventId: event.id, sequence: 1, duplicate: false };
      },
    };
    const jobs = new BulkJobs(contextWith(engine, submitter), { runningJobsMax: 2, jobsMax: 3 });
    const first = jobs.start(jobs.check(file(1), 'csv'), 'a').job;
    jobs.start(jobs.check(file(1), 'csv'), 'a');
    let error: unknown;
    try {
      jobs.start(jobs.check(file(1), 'csv'), 'a');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).code).toBe('TOO_MANY_JOBS');
    expect((error as ApiError).headers).toEqual({ 'retry-after': '5' });
    release();
    await first.done;
    await new Promise((resolve) => setTimeout(resolve, 10));
    for (let index = 0; index < 5; index++) await jobs.start(jobs.check(file(1), 'csv'), 'a').job.done;
    expect(jobs.size).toBe(3);
    expect(jobs.get(first.jobId)).toBeUndefined();
  });

  it('corrects a failed line when its outcome arrives after all (an acknowledgement that timed out)', async () => {
    const listeners = new Map<string, (outcome: Record<string, unknown>) => void>();
    const submitter: EventSubmitter = {
      submit: async (event) => {
        setTimeout(() => listeners.get(event.id)?.({ kind: 'balance', eventId: event.id }), 5);
        throw new Error('timeout');
      },
      trackOutcomes: (_memberId, eventId, listener) => {
        listeners.set(eventId, listener);
        return () => listeners.delete(eventId);
      },
    };
    const jobs = new BulkJobs(contextWith(engine, submitter), { outcomeWaitMs: 200 });
    const late = jobs.start(jobs.check(file(2), 'csv'), 'b').job;
    await late.done;
    expect(late.status()).toMatchObject({ state: 'completed', counts: { failed: 0, applied: 2 } });
    expect([...late.results()].map((result) => [result.status, result.reason])).toEqual([
      ['applied', undefined],
      ['applied', undefined],
    ]);
  });

  it('stops tracking when the engine closes', async () => {
    const stopped: string[] = [];
    const submitter: EventSubmitter = {
      submit: async (event) => ({ eventId: event.id, sequence: 1, duplicate: false }),
      trackOutcomes: (_memberId, eventId) => () => stopped.push(eventId),
    };
    const jobs = new BulkJobs(contextWith(engine, submitter));
    const { job } = jobs.start(jobs.check(file(2), 'csv'), 'a');
    while (job.status().counts.submitted < 2) await new Promise((resolve) => setTimeout(resolve, 1));
    jobs.close();
    await job.done;
    expect(job.status().state).toBe('stopped');
    expect(stopped).toHaveLength(2);
  });
});
