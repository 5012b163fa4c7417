import { spawn, type ChildProcess } from 'node:child_process';

/**
 * Processes that keep cores busy beside the engine (fault tests: a crash is
 * likelier to land mid-commit, and timeouts are tested on a starved machine).
 * Each is a child process spinning at normal priority; stop() kills them.
 */
export interface CpuHog {
  readonly pids: readonly number[];
  stop(): Promise<void>;
}

export function startCpuHog(processes = 1): CpuHog {
  const children: ChildProcess[] = [];
  for (let index = 0; index < processes; index++) {
    children.push(spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  }
  const stopOnExit = () => {
    for (const child of children) child.kill('SIGKILL');
  };
  process.once('exit', stopOnExit);
  return {
    pids: children.map((child) => child.pid ?? 0),
    async stop() {
      process.removeListener('exit', stopOnExit);
      await Promise.all(
        children.map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null || child.signalCode !== null) return resolve();
              child.once('exit', () => resolve());
              child.kill('SIGKILL');
            }),
        ),
      );
    },
  };
}
