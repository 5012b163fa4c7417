import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { access, constants, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EngineError } from '../config/errors.js';

/**
 * The embedded nats-server: when the engine runs without LOYALTY_NATS_URL it
 * starts a local nats-server with JetStream on a data directory of its own and
 * keeps it running. Everything here is bounded in time: a hung install, a server
 * that never becomes healthy or never exits is an error, not a hang.
 */

/** Where nats-server usually lives besides PATH (the Debian package installs to /usr/sbin, which non-root PATHs lack). */
export const NATS_SERVER_FALLBACK_DIRS: readonly string[] = ['/usr/sbin', '/usr/bin', '/usr/local/bin'];

const INSTALL_HINT =
  'install it with `sudo apt-get update && sudo apt-get install -y nats-server` ' +
  '(or from https://github.com/nats-io/nats-server/releases), ' +
  'or set LOYALTY_NATS_URL to an existing NATS server with JetStream enabled';

export interface CommandResult {
  code: number | null;
  /** stdout and stderr interleaved, last lines only. */
  outputTail: string;
  timedOut: boolean;
}

export type RunCommand = (
  command: string,
  args: readonly string[],
  options: { env: NodeJS.ProcessEnv; timeoutMs: number; onLine: (line: string) => void },
) => Promise<CommandResult>;

export interface FindNatsServerBinaryOptions {
  autoInstall: boolean;
  log?: (message: string) => void;
  /** PATH to search; defaults to process.env.PATH. */
  searchPath?: string;
  /** Searched after PATH. */
  fallbackDirs?: readonly string[];
  /** Bound on each apt-get run. */
  installTimeoutMs?: number;
  /** Test seams: whether we may install packages, and how commands run. */
  isRoot?: boolean;
  runCommand?: RunCommand;
}

const INSTALL_TIMEOUT_MS_DEFAULT = 300_000;

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    // access(X_OK) is true for directories too.
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** First executable `name` in the PATH entries, then the fallback directories. */
export async function findExecutable(name: string, searchPath: string, fallbackDirs: readonly string[]): Promise<string | undefined> {
  const dirs = [...searchPath.split(delimiter), ...fallbackDirs].filter((dir) => dir.length > 0);
  for (const dir of new Set(dirs)) {
    const candidate = join(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Output that means apt's package lists are missing or stale (fresh containers
 * ship without them): an `apt-get update` fixes these, nothing else does.
 */
const STALE_PACKAGE_LISTS = /Unable to locate package|has no installation candidate|Unable to fetch some archives|Failed to fetch/i;

function searchedPlaces(fallbackDirs: readonly string[]): string {
  return fallbackDirs.length === 0 ? 'PATH' : `PATH or ${fallbackDirs.join(', ')}`;
}

export async function findNatsServerBinary(options: FindNatsServerBinaryOptions): Promise<string> {
  const log = options.log ?? (() => {});
  const searchPath = options.searchPath ?? process.env.PATH ?? '';
  const fallbackDirs = options.fallbackDirs ?? NATS_SERVER_FALLBACK_DIRS;
  const found = await findExecutable('nats-server', searchPath, fallbackDirs);
  if (found !== undefined) return found;

  const isRoot = options.isRoot ?? process.getuid?.() === 0;
  const aptGet = await findExecutable('apt-get', searchPath, fallbackDirs);
  if (!options.autoInstall || !isRoot || aptGet === undefined) {
    const why = !options.autoInstall
      ? 'automatic install is off (LOYALTY_EMBEDDED_NATS_AUTO_INSTALL=false)'
      : !isRoot
        ? 'automatic install needs root'
        : 'apt-get is not available on this system';
    throw new EngineError(
      'ERR_NATS_SERVER_MISSING',
      `nats-server was not found in ${searchedPlaces(fallbackDirs)} and ${why}: ${INSTALL_HINT}`,
    );
  }

  const runCommand = options.runCommand ?? runBoundedCommand;
  const timeoutMs = options.installTimeoutMs ?? INSTALL_TIMEOUT_MS_DEFAULT;
  // noninteractive: a debconf prompt would wait forever on a server without a terminal.
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const run = (args: readonly string[]) => {
    log(`nats-server not found; running apt-get ${args.join(' ')}`);
    return runCommand(aptGet, args, { env, timeoutMs, onLine: (line) => log(`apt-get: ${line}`) });
  };
  const install = ['install', '-y', 'nats-server'];
  let attempted = install;
  let result = await run(install);
  if (result.code !== 0 && !result.timedOut && STALE_PACKAGE_LISTS.test(result.outputTail)) {
    attempted = ['update'];
    result = await run(attempted);
    if (result.code === 0) {
      attempted = install;
      result = await run(install);
    }
  }
  if (result.code !== 0) {
    const what = result.timedOut ? `timed out after ${timeoutMs} ms` : `failed (exit code ${result.code})`;
    throw new EngineError(
      'ERR_NATS_SERVER_MISSING',
      `nats-server was not found and \`apt-get ${attempted.join(' ')}\` ${what}:\n${result.outputTail}\n${INSTALL_HINT}`,
    );
  }
  const installed = await findExecutable('nats-server', searchPath, fallbackDirs);
  if (installed === undefined) {
    throw new EngineError('ERR_NATS_SERVER_MISSING', `apt-get installed nats-server but no executable was found in ${searchedPlaces(fallbackDirs)}: ${INSTALL_HINT}`);
  }
  log(`installed ${installed}`);
  if (await isDirectory('/run/systemd/system')) {
    // The Debian package enables and starts its own nats-server.service on 127.0.0.1:4222
    // (no JetStream) when systemd runs; it then holds the embedded server's default port.
    log('note: the Debian package also started nats-server.service on 127.0.0.1:4222; if the embedded server reports ERR_NATS_PORT_IN_USE, run `systemctl disable --now nats-server` or set LOYALTY_EMBEDDED_NATS_PORT');
  }
  return installed;
}

/** Keeps the last `max` lines of a stream of chunks, so errors can quote what a child said last. */
export class LineTail {
  private readonly lines: string[] = [];
  private partial = '';
  constructor(
    private readonly max: number,
    private readonly onLine?: (line: string) => void,
  ) {}

  push(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    // A child that never prints a newline must not grow memory without bound.
    if (this.partial.length > 64 * 1024) {
      parts.push(this.partial);
      this.partial = '';
    }
    for (const line of parts) this.add(line);
  }

  end(): void {
    if (this.partial.length > 0) this.add(this.partial);
    this.partial = '';
  }

  get(): string[] {
    return this.partial.length > 0 ? [...this.lines, this.partial] : [...this.lines];
  }

  private add(line: string): void {
    const trimmed = line.replace(/\r$/, '');
    this.lines.push(trimmed);
    if (this.lines.length > this.max) this.lines.shift();
    this.onLine?.(trimmed);
  }
}

/**
 * Runs a command with a deadline: SIGTERM at the deadline, SIGKILL 5 s later, to
 * its whole process group (apt-get runs dpkg and maintainer scripts; killing only
 * apt-get would leave them holding the output pipe and the dpkg lock).
 */
export const runBoundedCommand: RunCommand = (command, args, options) =>
  new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { env: options.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const tail = new LineTail(40, options.onLine);
    let timedOut = false;
    let exitCode: number | null = null;
    const timers: NodeJS.Timeout[] = [];
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // The group is gone already.
      }
    };
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      tail.end();
      resolvePromise({ code: exitCode, outputTail: tail.get().join('\n'), timedOut });
    };
    timers.push(
      setTimeout(() => {
        timedOut = true;
        signalGroup('SIGTERM');
        timers.push(setTimeout(() => signalGroup('SIGKILL'), 5_000));
      }, options.timeoutMs),
    );
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => tail.push(chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => tail.push(chunk));
    child.on('error', (error) => {
      if (settled) return;
      settled = true;
      for (const timer of timers) clearTimeout(timer);
      reject(new EngineError('ERR_COMMAND_FAILED', `cannot run ${command}: ${error.message}`, { cause: error }));
    });
    child.on('exit', (code) => {
      exitCode = code;
      // A straggler that inherited the pipe must not hold us past the exit for long.
      timers.push(
        setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
          settle();
        }, 1_000),
      );
    });
    child.on('close', settle);
  });

/** A port that was free a moment ago on `host`. Someone else may take it before we use it. */
export function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolvePromise(port) : reject(new Error(`no port from ${String(address)}`))));
    });
  });
}

export interface NatsServerConfigOptions {
  storeDir: string;
  host: string;
  /** 0: let the server pick (written as -1, nats-server's "random port"). */
  port: number;
  monitorPort: number;
  memoryStoreBytesMax: number;
  fileStoreBytesMax: number;
  payloadBytesMax: number;
  extraConfig?: string;
}

export const NATS_SERVER_CONFIG_FILE = 'nats-server.conf';
export const NATS_SERVER_PID_FILE = 'nats-server.pid';
const PAYLOAD_BYTES_MAX_DEFAULT = 8 * 1024 * 1024;

/** A double-quoted nats-server config string; the config lexer takes JSON-style escapes. */
function quote(value: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f]/.test(value)) throw new EngineError('ERR_NATS_CONFIG', `control character in nats-server config value ${JSON.stringify(value)}`);
  return JSON.stringify(value);
}

function hostPort(host: string, port: number): string {
  const bracketed = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${bracketed}:${port === 0 ? -1 : port}`;
}

function assertPort(name: string, port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new EngineError('ERR_NATS_CONFIG', `${name} must be an integer in 0..65535, got ${port}`);
  }
}

function assertByteCount(name: string, bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new EngineError('ERR_NATS_CONFIG', `${name} must be a positive integer, got ${bytes}`);
}

/** The config file text. Pure, so it is unit-tested without a server. */
export function natsServerConfigText(options: NatsServerConfigOptions): string {
  assertPort('port', options.port);
  assertPort('monitorPort', options.monitorPort);
  assertByteCount('memoryStoreBytesMax', options.memoryStoreBytesMax);
  assertByteCount('fileStoreBytesMax', options.fileStoreBytesMax);
  assertByteCount('payloadBytesMax', options.payloadBytesMax);
  const storeDir = resolve(options.storeDir);
  const lines = [
    '# Written by the loyalty engine at every start of its embedded nats-server; edits are overwritten.',
    `listen: ${quote(hostPort(options.host, options.port))}`,
    `http: ${quote(hostPort(options.host, options.monitorPort))}`,
    `max_payload: ${options.payloadBytesMax}`,
    // The pid file lets the next start find and stop a server orphaned by a crashed engine.
    `pid_file: ${quote(join(storeDir, NATS_SERVER_PID_FILE))}`,
    // The ports file tells us which ports the server picked when asked for -1, without a race.
    `ports_file_dir: ${quote(storeDir)}`,
    'jetstream {',
    `  store_dir: ${quote(storeDir)}`,
    `  max_memory_store: ${options.memoryStoreBytesMax}`,
    `  max_file_store: ${options.fileStoreBytesMax}`,
    '}',
  ];
  if (options.extraConfig !== undefined && options.extraConfig.trim().length > 0) {
    lines.push('', '# extraConfig', options.extraConfig.trim());
  }
  return `${lines.join('\n')}\n`;
}

export interface StartNatsServerOptions {
  binary: string;
  storeDir: string;
  /** Listen address for clients and monitoring; default 127.0.0.1 (the embedded server is not for other hosts). */
  host?: string;
  /** 0: a free port chosen by the server. */
  port: number;
  /** 0 (default): a free port chosen by the server. */
  monitorPort?: number;
  extraConfig?: string;
  /** nats-server output is appended here as well as kept in memory. */
  logFile?: string;
  memoryStoreBytesMax?: number;
  fileStoreBytesMax?: number;
  payloadBytesMax?: number;
  /** Bound on waiting for the server to become healthy. */
  startTimeoutMs?: number;
  /** Bound on a graceful stop before SIGKILL. */
  stopTimeoutMs?: number;
  /**
   * Default true: the server gets SIGINT when this process dies, even by SIGKILL
   * (Linux parent-death signal, set through util-linux `setpriv`, which then execs
   * nats-server so the pid is the server's). Without it, a crashed engine or test
   * runner leaves a server holding the port. The signal follows the thread that
   * spawned it: start servers from the main thread, not a worker thread.
   */
  exitWithParent?: boolean;
  log?: (message: string) => void;
}

export interface NatsServerHandle {
  url: string;
  port: number;
  monitorUrl: string;
  monitorPort: number;
  pid: number;
  /** SIGINT (graceful), wait up to stopTimeoutMs, then SIGKILL. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL now, for crash tests. */
  kill(): void;
  /** Exit code, or null when a signal ended it. */
  exited: Promise<number | null>;
  /** The server's last output lines. */
  logTail(): string[];
}

const START_TIMEOUT_MS_DEFAULT = 15_000;
const STOP_TIMEOUT_MS_DEFAULT = 10_000;
const ORPHAN_STOP_TIMEOUT_MS = 5_000;
const READY_POLL_MS = 20;
const HTTP_PROBE_TIMEOUT_MS = 1_000;
const MEMORY_STORE_BYTES_MAX_DEFAULT = 512 * 1024 * 1024;
const FILE_STORE_BYTES_MAX_DEFAULT = 64 * 1024 ** 3;

function clientHost(host: string): string {
  // A wildcard listen address is not something a client can dial.
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '[::1]';
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function waitUntilDead(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await sleep(25);
  }
  return !isAlive(pid);
}

/**
 * A nats-server left running by a crashed engine still holds our port and our
 * JetStream directory; two servers on one store would corrupt it. Stop it, but
 * only when its command line names our config file, so a reused pid is safe.
 */
async function stopOrphan(storeDir: string, configFile: string, log: (message: string) => void): Promise<void> {
  let pid: number;
  try {
    pid = Number.parseInt((await readFile(join(storeDir, NATS_SERVER_PID_FILE), 'utf8')).trim(), 10);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid || !isAlive(pid)) return;
  let commandLine: string;
  try {
    commandLine = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
  } catch {
    return; // No /proc (not Linux) or gone already: nothing we can prove is ours.
  }
  if (!commandLine.includes(configFile)) return;
  log(`stopping orphaned nats-server pid ${pid} left on ${storeDir}`);
  try {
    process.kill(pid, 'SIGINT'); // graceful, like stop()
    if (!(await waitUntilDead(pid, ORPHAN_STOP_TIMEOUT_MS))) {
      process.kill(pid, 'SIGKILL');
      await waitUntilDead(pid, ORPHAN_STOP_TIMEOUT_MS);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

interface PortsFile {
  nats?: string[];
  monitoring?: string[];
}

async function readPortsFile(storeDir: string, pid: number): Promise<{ port: number; monitorPort: number } | undefined> {
  // nats-server names it <basename of argv[0]>_<pid>.ports; match on the pid only.
  const name = (await readdir(storeDir)).find((file) => file.endsWith(`_${pid}.ports`));
  if (name === undefined) return undefined;
  let parsed: PortsFile;
  try {
    parsed = JSON.parse(await readFile(join(storeDir, name), 'utf8')) as PortsFile;
  } catch {
    return undefined; // Being written right now; the next poll reads it whole.
  }
  const port = Number(new URL(parsed.nats?.[0] ?? 'x:').port);
  const monitorPort = Number(new URL(parsed.monitoring?.[0] ?? 'x:').port);
  if (!(port > 0) || !(monitorPort > 0)) return undefined;
  return { port, monitorPort };
}

async function removeStalePortsFiles(storeDir: string): Promise<void> {
  for (const file of await readdir(storeDir)) {
    if (file.endsWith('.ports')) await rm(join(storeDir, file), { force: true });
  }
}

async function isHealthy(monitorUrl: string): Promise<boolean> {
  try {
    // js-enabled-only: ready for clients and JetStream running (2.9 calls the older js-enabled deprecated).
    const response = await fetch(`${monitorUrl}/healthz?js-enabled-only=true`, { signal: AbortSignal.timeout(HTTP_PROBE_TIMEOUT_MS) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

const ERROR_QUOTE_LINES = 20;

function startError(options: { host: string; port: number; monitorPort: number; binary: string; configFile: string }, why: string, tail: string[], cause?: unknown): EngineError {
  const lines = tail.slice(-ERROR_QUOTE_LINES);
  const quoted = lines.length > 0 ? `\nlast nats-server output:\n${lines.join('\n')}` : '';
  const bindFailure = tail.find((line) => /address already in use/i.test(line));
  if (bindFailure !== undefined) {
    // 2.9: "[FTL] Can't start monitoring: can't listen to the monitor port: ..." vs "[FTL] Error listening on port: ...".
    const monitor = /monitor/i.test(bindFailure);
    const which = monitor ? `monitoring port ${options.monitorPort}` : `client port ${options.port}`;
    const advice = monitor
      ? 'leave the monitoring port at 0 (any free port)'
      : 'choose another port with LOYALTY_EMBEDDED_NATS_PORT, or point LOYALTY_NATS_URL at the server already running there';
    return new EngineError(
      'ERR_NATS_PORT_IN_USE',
      `nats-server cannot listen on ${options.host}, ${which}: another process holds the port. ` +
        `Stop that process (Debian's nats-server package runs a system service on 127.0.0.1:4222: \`sudo systemctl disable --now nats-server\`), ` +
        `or ${advice}.\n${bindFailure}`,
      { cause },
    );
  }
  return new EngineError('ERR_NATS_SERVER_START', `nats-server (${options.binary} -c ${options.configFile}) ${why}${quoted}`, { cause });
}

let setprivLookup: Promise<string | undefined> | undefined;

/** util-linux is essential on Debian, so setpriv is nearly always there; without it we only lose exit-with-parent. */
function findSetpriv(): Promise<string | undefined> {
  if (process.platform !== 'linux') return Promise.resolve(undefined);
  setprivLookup ??= findExecutable('setpriv', process.env.PATH ?? '', ['/usr/bin', '/bin']);
  return setprivLookup;
}

/** Writes the config into storeDir, spawns nats-server, and resolves once it is healthy with JetStream on. */
export async function startNatsServer(options: StartNatsServerOptions): Promise<NatsServerHandle> {
  const log = options.log ?? (() => {});
  const host = options.host ?? '127.0.0.1';
  const monitorPortRequested = options.monitorPort ?? 0;
  const startTimeoutMs = options.startTimeoutMs ?? START_TIMEOUT_MS_DEFAULT;
  const stopTimeoutMs = options.stopTimeoutMs ?? STOP_TIMEOUT_MS_DEFAULT;
  const storeDir = resolve(options.storeDir);
  const configFile = join(storeDir, NATS_SERVER_CONFIG_FILE);
  const configText = natsServerConfigText({
    storeDir,
    host,
    port: options.port,
    monitorPort: monitorPortRequested,
    memoryStoreBytesMax: options.memoryStoreBytesMax ?? MEMORY_STORE_BYTES_MAX_DEFAULT,
    fileStoreBytesMax: options.fileStoreBytesMax ?? FILE_STORE_BYTES_MAX_DEFAULT,
    payloadBytesMax: options.payloadBytesMax ?? PAYLOAD_BYTES_MAX_DEFAULT,
    extraConfig: options.extraConfig,
  });
  if (!(await isExecutableFile(options.binary))) {
    throw new EngineError('ERR_NATS_SERVER_MISSING', `nats-server binary ${options.binary} is not an executable file: ${INSTALL_HINT}`);
  }
  await mkdir(storeDir, { recursive: true });
  await stopOrphan(storeDir, configFile, log);
  await removeStalePortsFiles(storeDir);
  await writeFile(configFile, configText);

  const logStream: WriteStream | undefined = options.logFile === undefined ? undefined : createWriteStream(options.logFile, { flags: 'a' });
  // Errors writing our copy of the log must not take the engine down; the in-memory tail still has it.
  logStream?.on('error', (error) => log(`cannot write nats-server log ${options.logFile}: ${error.message}`));
  const tail = new LineTail(60);
  const setpriv = options.exitWithParent === false ? undefined : await findSetpriv();
  const [command, args] =
    setpriv === undefined
      ? [options.binary, ['-c', configFile]]
      : [setpriv, ['--pdeathsig', 'SIGINT', '--', options.binary, '-c', configFile]];
  // Its own process group: a terminal's Ctrl-C reaches only the engine, which
  // then drains, acks and stops the server last (pdeathsig covers a crash).
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const onOutput = (chunk: string) => {
    tail.push(chunk);
    logStream?.write(chunk);
  };
  child.stdout?.setEncoding('utf8').on('data', onOutput);
  child.stderr?.setEncoding('utf8').on('data', onOutput);

  let exitCode: number | null | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<number | null>((resolveExit) => {
    // 'close' (not 'exit') so the output is fully read before anyone quotes it.
    child.once('close', (code) => {
      exitCode = code;
      tail.end();
      logStream?.end();
      resolveExit(code);
    });
    child.once('error', (error) => {
      spawnError = error;
      // A failed spawn emits no 'close' in some Node versions; settle here too.
      if (child.pid === undefined) {
        exitCode = null;
        logStream?.end();
        resolveExit(null);
      }
    });
  });

  const kill = () => {
    if (exitCode === undefined) child.kill('SIGKILL');
  };
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (exitCode !== undefined) return;
      // SIGINT, not SIGTERM: both shut 2.9 down gracefully (JetStream flushed), but SIGTERM
      // exits with code 1, so a clean stop would look like a failure (Debian's unit uses SIGINT too).
      child.kill('SIGINT');
      const timer = sleep(stopTimeoutMs, 'timeout' as const);
      if ((await Promise.race([exited, timer])) === 'timeout' && exitCode === undefined) {
        log(`nats-server pid ${child.pid} ignored SIGINT for ${stopTimeoutMs} ms; sending SIGKILL`);
        child.kill('SIGKILL');
        await exited;
      }
    })();
    return stopping;
  };

  const identity = { host, port: options.port, monitorPort: monitorPortRequested, binary: options.binary, configFile };
  const deadline = Date.now() + startTimeoutMs;
  let failure: { why: string; cause?: unknown };
  for (;;) {
    if (spawnError !== undefined) {
      failure = { why: `could not be started: ${spawnError.message}`, cause: spawnError };
      break;
    }
    if (exitCode !== undefined) {
      failure = { why: `exited with code ${exitCode} while starting` };
      break;
    }
    const ports = child.pid === undefined ? undefined : await readPortsFile(storeDir, child.pid);
    if (ports !== undefined) {
      const monitorUrl = `http://${clientHost(host)}:${ports.monitorPort}`;
      if (await isHealthy(monitorUrl)) {
        const handle: NatsServerHandle = {
          url: `nats://${clientHost(host)}:${ports.port}`,
          port: ports.port,
          monitorUrl,
          monitorPort: ports.monitorPort,
          pid: child.pid!,
          stop,
          kill,
          exited,
          logTail: () => tail.get(),
        };
        log(`nats-server pid ${handle.pid} ready at ${handle.url} (monitoring ${monitorUrl}, store ${storeDir})`);
        return handle;
      }
    }
    if (Date.now() >= deadline) {
      failure = { why: `was not healthy within ${startTimeoutMs} ms` };
      break;
    }
    await Promise.race([sleep(READY_POLL_MS), exited]);
  }
  // Stopping first also waits for the output to be read to the end, so the error quotes all of it.
  await stop();
  throw startError(identity, failure.why, tail.get(), failure.cause);
}

/** Delay before restart number `restartIndex` (0-based within the window): exponential, capped. */
export function restartDelayMs(restartIndex: number, initialMs: number, maxMs: number): number {
  if (!Number.isInteger(restartIndex) || restartIndex < 0) throw new RangeError(`restartIndex must be a non-negative integer, got ${restartIndex}`);
  // 2 ** 30 already exceeds any sane cap; clamping the exponent keeps the math finite.
  return Math.min(maxMs, initialMs * 2 ** Math.min(restartIndex, 30));
}

export interface NatsServerSupervisorOptions extends StartNatsServerOptions {
  /** Restarts allowed in any 60 s window before the supervisor gives up. */
  restartsPerMinuteMax?: number;
  restartDelayMsInitial?: number;
  restartDelayMsMax?: number;
}

export type NatsServerSupervisorEvents = {
  /** A server is up (first start or a restart). */
  started: [handle: NatsServerHandle, restart: boolean];
  /** The server exited without being asked to. */
  exit: [code: number | null, logTail: string[]];
  /** A restart is scheduled after delayMs. */
  restarting: [attempt: number, delayMs: number];
  /** A restart attempt failed; another may follow. */
  'restart-failed': [error: unknown];
  /** Gave up: too many restarts in a minute. Attach a listener: an unhandled 'error' event throws. */
  error: [error: EngineError];
};

const WINDOW_MS = 60_000;

/**
 * Keeps the embedded server running. An unexpected exit is restarted on the same
 * ports (clients reconnect to the URL they know) after a capped exponential delay;
 * more than restartsPerMinuteMax restarts in a minute means something is wrong
 * that restarting will not fix, so it stops trying and emits 'error'.
 */
export class NatsServerSupervisor extends EventEmitter<NatsServerSupervisorEvents> {
  private handle: NatsServerHandle | undefined;
  private startOptions: StartNatsServerOptions;
  private readonly restartTimes: number[] = [];
  private stopped = false;
  private restarting: Promise<void> | undefined;
  private readonly stopSignal = new AbortController();
  private failure: EngineError | undefined;

  constructor(private readonly options: NatsServerSupervisorOptions) {
    super();
    this.startOptions = { ...options };
  }

  get current(): NatsServerHandle | undefined {
    return this.handle;
  }

  get failed(): EngineError | undefined {
    return this.failure;
  }

  /** Starts the first server; a failure here is thrown, not retried (it is most likely configuration). */
  async start(): Promise<NatsServerHandle> {
    if (this.handle !== undefined || this.stopped) throw new EngineError('ERR_NATS_SUPERVISOR_STATE', 'supervisor already started or stopped');
    const handle = await startNatsServer(this.startOptions);
    if (this.stopped) {
      // stop() ran while we were starting: it found nothing to stop, so this is ours to stop.
      await handle.stop();
      throw new EngineError('ERR_NATS_SUPERVISOR_STATE', 'supervisor stopped while the server was starting');
    }
    // Pin the client port the server picked so restarts come back where clients reconnect.
    // The monitoring port stays as asked (usually "any"): nobody reconnects to it, and
    // pinning it would only add a way for a restart to fail.
    this.startOptions = { ...this.startOptions, port: handle.port };
    this.adopt(handle, false);
    return handle;
  }

  /** Stops the server for good; no restart follows. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopSignal.abort();
    await this.restarting;
    const handle = this.handle;
    this.handle = undefined;
    await handle?.stop();
  }

  private adopt(handle: NatsServerHandle, restart: boolean): void {
    this.handle = handle;
    void handle.exited.then((code) => {
      if (this.stopped || this.handle !== handle) return;
      this.handle = undefined;
      this.options.log?.(`nats-server pid ${handle.pid} exited unexpectedly (code ${code})`);
      this.emit('exit', code, handle.logTail());
      this.restarting = this.restartLoop().finally(() => {
        this.restarting = undefined;
      });
    });
    this.emit('started', handle, restart);
  }

  private async restartLoop(): Promise<void> {
    const maxPerMinute = this.options.restartsPerMinuteMax ?? 5;
    const initialMs = this.options.restartDelayMsInitial ?? 100;
    const maxMs = this.options.restartDelayMsMax ?? 5_000;
    while (!this.stopped) {
      const now = Date.now();
      while (this.restartTimes.length > 0 && now - this.restartTimes[0]! > WINDOW_MS) this.restartTimes.shift();
      if (this.restartTimes.length >= maxPerMinute) {
        this.failure = new EngineError(
          'ERR_NATS_SERVER_CRASHING',
          `embedded nats-server exited ${this.restartTimes.length + 1} times within a minute; giving up restarting it (see its log${this.options.logFile ? ` in ${this.options.logFile}` : ''})`,
        );
        this.emit('error', this.failure);
        return;
      }
      const delayMs = restartDelayMs(this.restartTimes.length, initialMs, maxMs);
      this.restartTimes.push(now);
      this.emit('restarting', this.restartTimes.length, delayMs);
      try {
        await sleep(delayMs, undefined, { signal: this.stopSignal.signal });
      } catch {
        return; // stop() during the delay.
      }
      try {
        const handle = await startNatsServer(this.startOptions);
        if (this.stopped) {
          await handle.stop();
          return;
        }
        this.adopt(handle, true);
        return;
      } catch (error) {
        this.options.log?.(`restarting nats-server failed: ${(error as Error).message}`);
        this.emit('restart-failed', error);
      }
    }
  }
}
