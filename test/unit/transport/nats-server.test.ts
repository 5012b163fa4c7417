import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EngineError } from '../../../src/config/errors.js';
import {
  findExecutable,
  findFreePort,
  findNatsServerBinary,
  LineTail,
  natsServerConfigText,
  restartDelayMs,
  runBoundedCommand,
  startNatsServer,
  type CommandResult,
  type RunCommand,
} from '../../../src/transport/nats-server.js';

const root = mkdtempSync(join(tmpdir(), 'loyalty-nats-unit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function fakeBinary(dir: string, name: string, executable = true): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, '#!/bin/sh\nexit 0\n');
  chmodSync(path, executable ? 0o755 : 0o644);
  return path;
}

async function rejection(promise: Promise<unknown>): Promise<EngineError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(EngineError);
  return error as EngineError;
}

describe('natsServerConfigText', () => {
  const base = {
    storeDir: '/var/lib/loyalty/nats',
    host: '127.0.0.1',
    port: 4222,
    monitorPort: 8222,
    memoryStoreBytesMax: 256 * 1024 * 1024,
    fileStoreBytesMax: 10 * 1024 ** 3,
    payloadBytesMax: 8 * 1024 * 1024,
  };

  it('writes listen, monitoring, payload, pid/ports files and JetStream limits', () => {
    expect(natsServerConfigText(base)).toBe(
      [
        '# Written by the loyalty engine at every start of its embedded nats-server; edits are overwritten.',
        'listen: "127.0.0.1:4222"',
        'http: "127.0.0.1:8222"',
        'max_payload: 8388608',
        'pid_file: "/var/lib/loyalty/nats/nats-server.pid"',
        'ports_file_dir: "/var/lib/loyalty/nats"',
        'jetstream {',
        '  store_dir: "/var/lib/loyalty/nats"',
        '  max_memory_store: 268435456',
        '  max_file_store: 10737418240',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('asks the server for a random port (-1) when port is 0, brackets IPv6, appends extraConfig', () => {
    const text = natsServerConfigText({ ...base, host: '::1', port: 0, monitorPort: 0, extraConfig: '\nmappings = { "a.*": "b.{{wildcard(1)}}" }\n' });
    expect(text).toContain('listen: "[::1]:-1"');
    expect(text).toContain('http: "[::1]:-1"');
    expect(text.endsWith('# extraConfig\nmappings = { "a.*": "b.{{wildcard(1)}}" }\n')).toBe(true);
  });

  it('resolves a relative store directory and quotes odd characters', () => {
    const text = natsServerConfigText({ ...base, storeDir: 'data/with "quote"' });
    expect(text).toContain(`store_dir: ${JSON.stringify(join(process.cwd(), 'data/with "quote"'))}`);
  });

  it('rejects out-of-range ports and sizes, and control characters', () => {
    expect(() => natsServerConfigText({ ...base, port: 70_000 })).toThrow(/port must be an integer in 0\.\.65535/);
    expect(() => natsServerConfigText({ ...base, monitorPort: -1 })).toThrow(EngineError);
    expect(() => natsServerConfigText({ ...base, fileStoreBytesMax: 0 })).toThrow(/fileStoreBytesMax/);
    expect(() => natsServerConfigText({ ...base, storeDir: '/tmp/a\nb' })).toThrow(/control character/);
  });
});

describe('restartDelayMs', () => {
  it('doubles from the initial delay and stops at the cap', () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((index) => restartDelayMs(index, 100, 5_000))).toEqual([100, 200, 400, 800, 1_600, 3_200, 5_000]);
    expect(restartDelayMs(1_000, 100, 5_000)).toBe(5_000);
  });

  it('rejects a negative or fractional index', () => {
    expect(() => restartDelayMs(-1, 100, 5_000)).toThrow(RangeError);
    expect(() => restartDelayMs(0.5, 100, 5_000)).toThrow(RangeError);
  });
});

describe('binary lookup', () => {
  it('searches PATH first, then the fallback directories, and skips non-executables and directories', async () => {
    const first = join(root, 'path-a');
    const second = join(root, 'path-b');
    const fallback = join(root, 'fallback');
    fakeBinary(first, 'nats-server', false);
    mkdirSync(join(second, 'nats-server'), { recursive: true }); // a directory, not a binary
    const expected = fakeBinary(fallback, 'nats-server');
    expect(await findExecutable('nats-server', [first, second].join(delimiter), [fallback])).toBe(expected);
    const inPath = fakeBinary(join(root, 'path-c'), 'nats-server');
    expect(await findNatsServerBinary({ autoInstall: false, searchPath: [first, join(root, 'path-c')].join(delimiter), fallbackDirs: [fallback] })).toBe(inPath);
  });

  it('explains how to get nats-server when it is missing and may not be installed', async () => {
    const empty = join(root, 'empty');
    mkdirSync(empty, { recursive: true });
    const off = await rejection(findNatsServerBinary({ autoInstall: false, searchPath: empty, fallbackDirs: [] }));
    expect(off.code).toBe('ERR_NATS_SERVER_MISSING');
    expect(off.message).toContain('sudo apt-get update && sudo apt-get install -y nats-server');
    expect(off.message).toContain('LOYALTY_NATS_URL');
    expect(off.message).toContain('automatic install is off');

    const notRoot = await rejection(findNatsServerBinary({ autoInstall: true, isRoot: false, searchPath: empty, fallbackDirs: [] }));
    expect(notRoot.message).toContain('automatic install needs root');

    const noApt = await rejection(findNatsServerBinary({ autoInstall: true, isRoot: true, searchPath: empty, fallbackDirs: [] }));
    expect(noApt.message).toContain('apt-get is not available');
  });

  /** A fake apt-get: records calls, and "installs" by creating the binary when told to. */
  function fakeApt(script: Array<{ result: Partial<CommandResult>; install?: boolean }>, binDir: string) {
    const calls: Array<{ command: string; args: readonly string[]; frontend: string | undefined }> = [];
    const run: RunCommand = async (command, args, options) => {
      calls.push({ command, args, frontend: options.env.DEBIAN_FRONTEND });
      const step = script.shift();
      if (step === undefined) throw new Error('unexpected command');
      options.onLine(`${args[0]} progress`);
      if (step.install === true) fakeBinary(binDir, 'nats-server');
      return { code: 0, outputTail: '', timedOut: false, ...step.result };
    };
    return { calls, run };
  }

  it('installs with apt-get non-interactively, running apt-get update once when the package lists are missing', async () => {
    const dir = join(root, 'install-ok');
    const apt = fakeBinary(dir, 'apt-get');
    const { calls, run } = fakeApt(
      [{ result: { code: 100, outputTail: 'E: Unable to locate package nats-server' } }, { result: {} }, { result: {}, install: true }],
      dir,
    );
    const lines: string[] = [];
    const binary = await findNatsServerBinary({ autoInstall: true, isRoot: true, searchPath: dir, fallbackDirs: [], runCommand: run, log: (line) => lines.push(line) });
    expect(binary).toBe(join(dir, 'nats-server'));
    expect(calls).toEqual([
      { command: apt, args: ['install', '-y', 'nats-server'], frontend: 'noninteractive' },
      { command: apt, args: ['update'], frontend: 'noninteractive' },
      { command: apt, args: ['install', '-y', 'nats-server'], frontend: 'noninteractive' },
    ]);
    expect(lines).toContain('apt-get: update progress');
  });

  it('does not run apt-get update for unrelated failures, and reports timeouts', async () => {
    const dir = join(root, 'install-fails');
    fakeBinary(dir, 'apt-get');
    const locked = fakeApt([{ result: { code: 100, outputTail: 'E: Could not get lock /var/lib/dpkg/lock-frontend' } }], dir);
    const error = await rejection(findNatsServerBinary({ autoInstall: true, isRoot: true, searchPath: dir, fallbackDirs: [], runCommand: locked.run }));
    expect(locked.calls).toHaveLength(1);
    expect(error.code).toBe('ERR_NATS_SERVER_MISSING');
    expect(error.message).toContain('failed (exit code 100)');
    expect(error.message).toContain('Could not get lock');

    const slow = fakeApt([{ result: { code: null, timedOut: true } }], dir);
    const timeout = await rejection(
      findNatsServerBinary({ autoInstall: true, isRoot: true, searchPath: dir, fallbackDirs: [], runCommand: slow.run, installTimeoutMs: 1_234 }),
    );
    expect(timeout.message).toContain('timed out after 1234 ms');

    const noNetwork = fakeApt([{ result: { code: 100, outputTail: 'E: Unable to locate package nats-server' } }, { result: { code: 100, outputTail: 'W: Failed to fetch' } }], dir);
    const update = await rejection(findNatsServerBinary({ autoInstall: true, isRoot: true, searchPath: dir, fallbackDirs: [], runCommand: noNetwork.run }));
    expect(noNetwork.calls.map((call) => call.args.join(' '))).toEqual(['install -y nats-server', 'update']);
    expect(update.message).toContain('`apt-get update` failed (exit code 100)');
  });
});

describe('runBoundedCommand', () => {
  it('streams lines and returns the exit code', async () => {
    const lines: string[] = [];
    const result = await runBoundedCommand('/bin/sh', ['-c', 'echo one; echo two >&2; exit 3'], { env: process.env, timeoutMs: 5_000, onLine: (line) => lines.push(line) });
    expect(result.code).toBe(3);
    expect(result.timedOut).toBe(false);
    expect(lines.sort()).toEqual(['one', 'two']);
  });

  it('kills a command that outlives its timeout', async () => {
    const started = Date.now();
    const result = await runBoundedCommand('/bin/sh', ['-c', 'sleep 30'], { env: process.env, timeoutMs: 100, onLine: () => {} });
    expect(result.timedOut).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('LineTail', () => {
  it('keeps the last lines across chunk boundaries', () => {
    const seen: string[] = [];
    const tail = new LineTail(2, (line) => seen.push(line));
    tail.push('a\nb');
    tail.push('c\r\nd\n');
    tail.push('partial');
    expect(tail.get()).toEqual(['bc', 'd', 'partial']);
    tail.end();
    expect(tail.get()).toEqual(['d', 'partial']);
    expect(seen).toEqual(['a', 'bc', 'd', 'partial']);
  });
});

describe('findFreePort', () => {
  it('returns a port that can be bound', async () => {
    const port = await findFreePort('127.0.0.1');
    expect(port).toBeGreaterThan(0);
    const server = createServer();
    await new Promise<void>((resolvePromise, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolvePromise));
    await new Promise((resolvePromise) => server.close(resolvePromise));
  });
});

describe('startNatsServer', () => {
  it('refuses a binary that is not an executable file before touching the store', async () => {
    const error = await rejection(startNatsServer({ binary: join(root, 'no-such-nats-server'), storeDir: join(root, 'never-created'), port: 0 }));
    expect(error.code).toBe('ERR_NATS_SERVER_MISSING');
    expect(error.message).toContain('sudo apt-get update && sudo apt-get install -y nats-server');
  });
});
