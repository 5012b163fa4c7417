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

  it('a failed start is one message on stderr (no log line, no stack), exit 2 for bad configuration', () => {
    for (const format of [undefined, 'json', 'pretty']) {
      const run = badStart(format);
      expect(run.code, format).toBe(2);
      expect(run.err, format).toMatch(/^invalid API tokens:\n {2}- LOYALTY_API_TOKENS_FILE: cannot read .*no-such-tokens/);
      expect(run.err.match(/invalid API tokens/g), format).toHaveLength(1);
      expect(run.err, format).not.toMatch(/\n\s+at /); // no stack
      expect(run.out, format).not.toMatch(/invalid API tokens/);
    }
  });

  it('LOYALTY_LOG_FORMAT=pretty writes human lines, json (the default off a terminal) JSON lines', () => {
    const pretty = badStart('pretty');
    expect(pretty.out).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(loyalty-engine\): engine stopped/m);
    expect(pretty.out).not.toMatch(/^\{/m);
    const json = badStart();
    const lines = json.out.trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
  });
});
