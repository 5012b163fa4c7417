import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';

/**
 * A child process the bench owns: its output goes to a log file and the last
 * lines stay in memory for error messages; stop() sends SIGTERM, waits, then
 * SIGKILL, so no run leaves a process behind.
 */
export interface ManagedChild {
  readonly name: string;
  readonly pid: number;
  readonly process: ChildProcess;
  readonly logPath: string | undefined;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<ExitStatus>;
  tail(lines?: number): string;
  /** Resolves when a line of output matches, rejects on exit or timeout. */
  waitForOutput(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it ended and how long it took. */
  stop(graceMs: number): Promise<StopResult>;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StopResult extends ExitStatus {
  stopMs: number;
  killed: boolean;
}

export interface SpawnOptions {
  name: string;
  command: string;
  args: readonly string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  logPath?: string;
  tailLines?: number;
}

export function spawnChild(options: SpawnOptions): ManagedChild {
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`could not start ${options.name} (${options.command})`);
  const pid = child.pid;
  const tailMax = options.tailLines ?? 200;
  const recent: string[] = [];
  const watchers = new Set<(line: string) => void>();
  const log: WriteStream | undefined = options.logPath === undefined ? undefined : createWriteStream(options.logPath);
  // A log that cannot be written must not crash the run: the tail in memory still holds the last lines.
  log?.on('error', () => undefined);
  let partial = '';
  const onData = (chunk: Buffer): void => {
    log?.write(chunk);
    const text = partial + chunk.toString('utf8');
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      recent.push(line);
      if (recent.length > tailMax) recent.shift();
      for (const watcher of watchers) watcher(line);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  let exitStatus: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => {
      exitStatus = { code, signal };
      resolve(exitStatus);
    });
    child.once('error', () => {
      exitStatus ??= { code: null, signal: null };
      resolve(exitStatus);
    });
  });
  // Close the log only after the pipes have drained, or the last lines are lost.
  child.once('close', () => log?.end());

  return {
    name: options.name,
    pid,
    process: child,
    logPath: options.logPath,
    exited,
    tail: (lines = 30) => recent.slice(-lines).join('\n'),
    waitForOutput(pattern, timeoutMs) {
      return new Promise<string>((resolve, reject) => {
        const found = recent.find((line) => pattern.test(line));
        if (found !== undefined) {
          resolve(found);
          return;
        }
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${options.name}: no output matching ${pattern} within ${timeoutMs} ms; last output:\n${recent.slice(-20).join('\n')}`));
        }, timeoutMs);
        const watcher = (line: string): void => {
          if (pattern.test(line)) {
            cleanup();
            resolve(line);
          }
        };
        void exited.then((status) => {
          cleanup();
          reject(new Error(`${options.name} exited (code ${status.code}, signal ${status.signal}) before ${pattern}; last output:\n${recent.slice(-20).join('\n')}`));
        });
        const cleanup = (): void => {
          clearTimeout(timer);
          watchers.delete(watcher);
        };
        watchers.add(watcher);
      });
    },
    async stop(graceMs) {
      const started = Date.now();
      if (exitStatus !== undefined) return { ...exitStatus, stopMs: 0, killed: false };
      child.kill('SIGTERM');
      let killed = false;
      const timer = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, graceMs);
      const status = await exited;
      clearTimeout(timer);
      return { ...status, stopMs: Date.now() - started, killed };
    },
  };
}
