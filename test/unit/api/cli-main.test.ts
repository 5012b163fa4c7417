import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));

interface Run {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

/** `loyalty <args>` from the sources, as a person runs it. */
function loyalty(...args: string[]): Promise<Run> {
  return loyaltyWith({}, ...args);
}

/** Asynchronous, so that a test's runs go side by side: each one's start (tsx compiling the CLI) takes seconds. */
function loyaltyWith(env: Record<string, string>, ...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

describe('loyalty exit codes', () => {
  it('no command is a usage error (2, usage on stderr); help is not (0, on stdout)', async () => {
    const [none, help, unknown] = await Promise.all([loyalty(), loyalty('help'), loyalty('frobnicate')]);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/^usage: loyalty <command>/);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^usage: loyalty <command>/);
    expect(unknown.code).toBe(2);
  });

  it('program validate: 2 without a file, for a missing file and for a bad option; 0 for a valid program and for --help', async () => {
    const [noFile, bare, missing, option, help, valid] = await Promise.all([
      loyalty('program', 'validate'),
      loyalty('program'),
      loyalty('program', 'validate', 'no/such/program.yaml'),
      loyalty('program', 'validate', '--strict'),
      loyalty('program', '--help'),
      loyalty('program', 'validate', 'config/programs/retail.yaml'),
    ]);
    expect(noFile.code).toBe(2);
    expect(noFile.err).toMatch(/^expected a program file\n\nusage: loyalty program validate <file>/);
    expect(bare.code).toBe(2);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/ERR_PROGRAM_FILE_UNREADABLE: cannot read program file no\/such\/program.yaml/);
    expect(option.code).toBe(2);
    expect(option.err).toBe('unknown option --strict (see --help)\n');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/exit codes: 0 valid, 2 not valid, not readable, or bad usage/);
    expect(valid.code).toBe(0);
    expect(valid.out).toMatch(/^ok: program "retail"/);
  });
});

describe('loyalty start logs', () => {
  /** A start that fails on a missing token file, before it touches NATS. */
  async function badStart(format?: string): Promise<Run> {
    const dataDir = mkdtempSync(join(tmpdir(), 'loyalty-logs-'));
    try {
      return await loyaltyWith(
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

  it('a failed start is one message on stderr (no log line, no stack), exit 2 for bad configuration', async () => {
    const formats = [undefined, 'json', 'pretty'];
    const runs = await Promise.all(formats.map((format) => badStart(format)));
    for (const [index, format] of formats.entries()) {
      const run = runs[index]!;
      expect(run.code, format).toBe(2);
      expect(run.err, format).toMatch(/^invalid API tokens:\n {2}- LOYALTY_API_TOKENS_FILE: cannot read .*no-such-tokens/);
      expect(run.err.match(/invalid API tokens/g), format).toHaveLength(1);
      expect(run.err, format).not.toMatch(/\n\s+at /); // no stack
      expect(run.out, format).not.toMatch(/invalid API tokens/);
    }
  });

  it('LOYALTY_LOG_FORMAT=pretty writes human lines, json (the default off a terminal) JSON lines', async () => {
    const [pretty, json] = await Promise.all([badStart('pretty'), badStart()]);
    expect(pretty.out).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(loyalty-engine\): engine stopped/m);
    expect(pretty.out).not.toMatch(/^\{/m);
    const lines = json.out.trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
  });
});
