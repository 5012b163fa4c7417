import { describe, expect, it, vi } from 'vitest';
import { SnapshotSchedule, type SnapshotScheduleOptions } from '../../../src/cluster/snapshot-schedule.js';
import type { SnapshotPosition } from '../../../src/cluster/snapshots.js';

const at = (changelogSeq: number): SnapshotPosition => ({ changelogSeq, watermark: changelogSeq * 10, owner: 'a', epoch: 1 });

interface Take {
  readonly partition: number;
  readonly position: SnapshotPosition;
  finish(): void;
  fail(error: Error): void;
}

/** A schedule whose snapshots the test finishes by hand, so what runs at once and with which position is visible. */
function schedule(options: Partial<SnapshotScheduleOptions> = {}) {
  const takes: Take[] = [];
  const errors: [number, unknown][] = [];
  let inFlight = 0;
  let inFlightMax = 0;
  const subject = new SnapshotSchedule({
    recordsMin: 4,
    bytesMin: 1_000_000,
    intervalMsMin: 0,
    retryMs: 20,
    take: (partition, position) =>
      new Promise<void>((resolve, reject) => {
        inFlight += 1;
        inFlightMax = Math.max(inFlightMax, inFlight);
        const done = (): void => {
          inFlight -= 1;
        };
        takes.push({ partition, position, finish: () => (done(), resolve()), fail: (error) => (done(), reject(error)) });
      }),
    onError: (partition, error) => errors.push([partition, error]),
    ...options,
  });
  return { subject, takes, errors, inFlightMax: () => inFlightMax };
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('SnapshotSchedule', () => {
  it('takes a snapshot once enough records are committed, at the latest completed position, and counts what came during it toward the next', async () => {
    const { subject, takes } = schedule();
    subject.own(3);
    for (let seq = 1; seq <= 3; seq++) subject.committed(3, at(seq), 100);
    expect(takes).toHaveLength(0);
    subject.committed(3, at(4), 100);
    expect(takes.map((take) => [take.partition, take.position.changelogSeq])).toEqual([[3, 4]]);
    // Committed while the snapshot runs: not lost, they count toward the next one.
    for (let seq = 5; seq <= 8; seq++) subject.committed(3, at(seq), 100);
    expect(takes).toHaveLength(1);
    takes[0]!.finish();
    await settle();
    expect(takes.map((take) => take.position.changelogSeq)).toEqual([4, 8]);
    takes[1]!.finish();
    await settle();
    subject.committed(3, at(9), 100);
    expect(takes).toHaveLength(2);
    expect(subject.stats()).toEqual({ taken: 2, failed: 0, queued: 0, running: null });
    await subject.stop();
  });

  it('takes one at a time when bytes call for it, and each partition with its own latest position', async () => {
    const { subject, takes, inFlightMax } = schedule({ recordsMin: 1_000, bytesMin: 5_000 });
    for (let partition = 0; partition < 5; partition++) subject.own(partition);
    for (let seq = 1; seq <= 3; seq++) for (let partition = 0; partition < 5; partition++) subject.committed(partition, at(seq * 10 + partition), 2_000);
    expect(takes).toHaveLength(1);
    expect(subject.stats().queued).toBe(4);
    // A partition queued behind others is snapshotted at its newest position when its turn comes.
    subject.committed(4, at(99), 10);
    for (let index = 0; index < 4; index++) {
      expect(takes).toHaveLength(index + 1); // the next starts only when the one before finished
      takes[index]!.finish();
      await settle();
    }
    expect(takes).toHaveLength(5);
    takes[4]!.finish();
    await settle();
    expect(takes.map((take) => [take.partition, take.position.changelogSeq])).toEqual([
      [0, 30],
      [1, 31],
      [2, 32],
      [3, 33],
      [4, 99],
    ]);
    expect(inFlightMax()).toBe(1);
    await subject.stop();
  });

  it('leaves intervalMsMin between two snapshots of a partition, and takes a quiet partition past its threshold when the interval ends', async () => {
    const { subject, takes } = schedule({ intervalMsMin: 60 });
    subject.own(1);
    for (let seq = 1; seq <= 4; seq++) subject.committed(1, at(seq), 1);
    expect(takes).toHaveLength(0); // owned just now: the interval counts from there
    const started = Date.now();
    await vi.waitFor(() => expect(takes).toHaveLength(1), { timeout: 2_000, interval: 5 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(40);
    expect(takes[0]!.position.changelogSeq).toBe(4);
    takes[0]!.finish();
    await settle();
    for (let seq = 5; seq <= 8; seq++) subject.committed(1, at(seq), 1);
    expect(takes).toHaveLength(1);
    await vi.waitFor(() => expect(takes).toHaveLength(2), { timeout: 2_000, interval: 5 });
    expect(takes[1]!.position.changelogSeq).toBe(8);
    takes[1]!.finish();
    await subject.stop();
  });

  it('retries a failed snapshot after retryMs with the newest position, keeping its counts, and reports the error', async () => {
    const { subject, takes, errors } = schedule();
    subject.own(7);
    for (let seq = 1; seq <= 4; seq++) subject.committed(7, at(seq), 1);
    subject.committed(7, at(5), 1);
    takes[0]!.fail(new Error('object store unavailable'));
    await settle();
    expect(errors.map(([partition, error]) => [partition, (error as Error).message])).toEqual([[7, 'object store unavailable']]);
    expect(takes).toHaveLength(1); // not at once
    subject.committed(7, at(6), 1);
    expect(takes).toHaveLength(1);
    await vi.waitFor(() => expect(takes).toHaveLength(2), { timeout: 2_000, interval: 5 });
    expect(takes[1]!.position.changelogSeq).toBe(6);
    takes[1]!.finish();
    await settle();
    expect(subject.stats()).toMatchObject({ taken: 1, failed: 1, running: null });
    await subject.stop();
  });

  it('forgets a released partition, refuses a commit of a partition it does not hold or a position going back, and stops after the snapshot in flight', async () => {
    const { subject, takes } = schedule();
    subject.own(1);
    subject.own(2);
    for (let seq = 1; seq <= 4; seq++) subject.committed(1, at(seq), 1);
    for (let seq = 1; seq <= 4; seq++) subject.committed(2, at(seq), 1);
    expect(subject.stats()).toMatchObject({ running: 1, queued: 1 });
    subject.release(2);
    expect(subject.stats().queued).toBe(0);
    expect(() => subject.committed(2, at(5), 1)).toThrow(/not owned/);
    expect(() => subject.committed(1, at(2), 1)).toThrow(/only move forward/);
    let stopped = false;
    const stopping = subject.stop().then(() => (stopped = true));
    await settle();
    expect(stopped).toBe(false); // waits for the snapshot in flight
    takes[0]!.finish();
    await stopping;
    for (let seq = 5; seq <= 12; seq++) subject.committed(1, at(seq), 1);
    expect(takes).toHaveLength(1);
    expect(() => subject.own(3)).toThrow(/stopped/);
  });
});
