import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../harness/engine.js';
import { natsServerVersion } from '../harness/nats-server.js';
import { machineCpuBusyPercent } from '../measure/process-sampler.js';
import type { BenchEnvironment, BenchResult } from './result.js';

export const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');

/** 2026-11-23T10:00:00.000Z → 2026-11-23T10-00-00-000Z (safe in file names everywhere). */
export function runStampOf(date: Date): string {
  return date.toISOString().replace(/[:.]/g, '-');
}

/** `result`: a BenchResult, or another bench's own result (bench/cluster/instances.ts). */
export function writeResultFile(result: BenchResult | object, runStamp: string, dir = RESULTS_DIR): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${runStamp}.json`);
  // NaN and Infinity are not JSON: write them as null rather than dropping the field.
  writeFileSync(path, `${JSON.stringify(result, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2)}\n`);
  return path;
}

/** Machine and code facts that make two result files comparable (read-only git queries). Call it before the run. */
export async function describeEnvironment(): Promise<BenchEnvironment> {
  const processors = cpus();
  return {
    hostname: hostname(),
    platform: `${process.platform}-${process.arch}`,
    kernel: release(),
    cpuCount: processors.length,
    cpuModel: processors[0]?.model.trim() ?? 'unknown',
    memoryBytes: totalmem(),
    loadAverageAtStart: loadavg().map((value) => Math.round(value * 100) / 100),
    cpuBusyPercentAtStart: await machineCpuBusyPercent(),
    node: process.version,
    natsServer: natsServerVersion(),
    gitCommit: git(['rev-parse', 'HEAD']),
    gitDirty: ((status) => (status === null ? null : status.length > 0))(git(['status', '--porcelain', '--untracked-files=no'])),
  };
}

function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}
