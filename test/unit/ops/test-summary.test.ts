import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/** scripts/test-summary.mjs: the last line of .ci/run, read by CI. */
const dir = mkdtempSync(join(tmpdir(), 'loyalty-summary-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function summary(report: unknown): { lines: string[]; status: number | null } {
  const file = join(dir, `${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(report));
  const run = spawnSync(process.execPath, ['scripts/test-summary.mjs', file], { encoding: 'utf8' });
  return { lines: run.stdout.trim().split('\n'), status: run.status };
}

const suite = (status: string, tests: string[]) => ({ status, assertionResults: tests.map((each) => ({ status: each })) });

describe('the CI summary line', () => {
  it('counts passed and failed tests, skipped ones on the line before', () => {
    expect(summary({ numPassedTests: 3, numFailedTests: 0, numPendingTests: 1, testResults: [suite('passed', ['passed', 'passed', 'passed', 'skipped'])] })).toEqual({ lines: ['1 skipped', '3 passed, 0 failed'], status: 0 });
    expect(summary({ numPassedTests: 2, numFailedTests: 1, testResults: [suite('failed', ['passed', 'passed', 'failed'])] })).toEqual({ lines: ['2 passed, 1 failed'], status: 1 });
  });

  it('counts a file that failed outside its tests (its beforeAll threw, so its tests show as skipped) as one failure', () => {
    const report = { numPassedTests: 2, numFailedTests: 0, numPendingTests: 1, testResults: [suite('passed', ['passed', 'passed']), suite('failed', ['skipped'])] };
    expect(summary(report)).toEqual({ lines: ['1 skipped', '2 passed, 1 failed'], status: 1 });
    expect(summary({ numPassedTests: 2, numFailedTests: 0, testResults: [suite('passed', ['passed', 'passed']), suite('failed', [])] }).lines.at(-1)).toBe('2 passed, 1 failed');
  });

  it('fails without a report or without a test that ran', () => {
    expect(summary({ numPassedTests: 0, numFailedTests: 0, testResults: [] })).toEqual({ lines: ['0 passed, 0 failed'], status: 1 });
    const missing = spawnSync(process.execPath, ['scripts/test-summary.mjs', join(dir, 'none.json')], { encoding: 'utf8' });
    expect({ last: missing.stdout.trim(), status: missing.status }).toEqual({ last: '0 passed, 1 failed', status: 1 });
  });
});
