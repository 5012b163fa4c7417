import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** `loyalty <args>` from the sources, as a person runs it. */
function loyalty(...args: string[]) {
  return loyaltyWith({}, ...args);
}

function loyaltyWith(env: Record<string, string>, ...args: string[]) {
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, ...env },
  });
  return { code: result.status, out: result.stdout, err: result.stderr };
}

describe('loyalty exit codes', () => {
  it('no command is a usage error (2, usage on stderr); help is not (0, on stdout)', () => {
    const none = loyalty();
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/^usage: loyalty <command>/);
    const help = loyalty('help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^usage: loyalty <command>/);
    expect(loyalty('frobnicate').code).toBe(2);
  });

  it('program validate: 2 without a file, for a missing file and for a bad option; 0 for a valid program and for --help', () => {
    const noFile = loyalty('program', 'validate');
    expect(noFile.code).toBe(2);
    expect(noFile.err).toMatch(/^expected a program file\n\nusage: loyalty program validate <file>/);
    expect(loyalty('program').code).toBe(2);
    const missing = loyalty('program', 'validate', 'no/such/program.yaml');
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/ERR_PROGRAM_FILE_UNREADABLE: cannot read program file no\/such\/program.yaml/);
    const option = loyalty('program', 'validate', '--strict');
    expect(option.code).toBe(2);
    expect(option.err).toBe('unknown option --strict (see --help)\n');
    const help = loyalty('program', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/exit codes: 0 valid, 2 not valid, not readable, or bad usage/);
    const valid = loyalty('program', 'validate', 'config/programs/retail.yaml');
    expect(valid.code).toBe(0);
    expect(valid.out).toMatch(/^ok: program "retail"/);
  });
});

describe('loyalty start logs', () => {
  /** A start that fails on a missing token file, before it touches NATS. */
  function badStart(format?: string) {
    const dataDir = mkdtempSync(join(tmpdir(), 'loyalty-logs-'));
    try {
      return loyaltyWith(
        {
          LOYALTY_DATA_DIR: dataDir,
          LOYALTY_API_TOKENS_FILE: join(dataDir, 'no-such-tokens'),
          LOYALTY_EMBEDDED_NATS_AUTO_INSTALL: 'false',
          ...(format !== undefined ? { LOYALTY_LOG_FORMAT: format } : {}),
        },
        'start',
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }

  it('a fatal error is one message, JSON when stdout is not a terminal, exit 2 for bad configuration', () => {
    const run = badStart();
    expect(run.code).toBe(2);
    expect(run.err).toBe('');
    const fatal = run.out.split('\n').filter((line) => line.includes('no-such-tokens'));
    expect(fatal).toHaveLength(1);
    const line = JSON.parse(fatal[0]!) as { level: number; msg: string; err?: unknown };
    expect(line.level).toBe(60);
    expect(line.msg).toMatch(/^engine failed to start: invalid API tokens:/);
    expect(line.err).toBeUndefined(); // no stack beside the message
  });

  it('LOYALTY_LOG_FORMAT=pretty writes human lines', () => {
    const run = badStart('pretty');
    expect(run.code).toBe(2);
    expect(run.out).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] FATAL \(loyalty-engine\): engine failed to start: invalid API tokens:/m);
    expect(run.out.match(/engine failed to start/g)).toHaveLength(1);
    expect(run.out.match(/FATAL/g)).toHaveLength(1);
    expect(run.out).not.toMatch(/^\{/m);
  });
});
