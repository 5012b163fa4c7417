#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, EngineError, isEngineErrorCode } from '../config/errors.js';
import { loadProgramFile } from '../config/program-file.js';
import { loadSettings } from '../config/settings.js';
import { Engine } from '../engine.js';
import { createLogger } from '../log.js';
import { adjustCommand } from './commands/adjust.js';
import { memberCommand } from './commands/member.js';
import { usageMessage } from './commands/client.js';
import { reportCommand } from './commands/report.js';

/**
 * loyalty <command>: the engine's entry points. Exit codes: 0 ok, 1 runtime
 * failure, 2 bad configuration or usage; a second stop signal kills the
 * process (SIGKILL) at once.
 */
const USAGE = `usage: loyalty <command> [options]

commands:
  start                      start the engine (settings from LOYALTY_* environment variables)
  program validate <file>    check a program file; lists every bad field
  member <id>                a member's wallet and latest ledger entries (HTTP API)
  adjust ...                 credit/debit points, one member or a CSV/NDJSON file (HTTP API)
  report                     KPIs per day, week or month (HTTP API)
  help                       this text

Run 'loyalty <command> --help' for a command's options.`;

const START_HELP = `usage: loyalty start

Starts the engine. Every setting comes from an environment variable; the
important ones:
  LOYALTY_NATS_URL        NATS server(s); empty: start a local nats-server with JetStream
  LOYALTY_DATA_DIR        state directory (default ./data)
  LOYALTY_PROGRAM_FILE    loyalty program (default: the package's config/programs/retail.yaml)
  LOYALTY_HTTP_PORT       HTTP port for /health and /metrics (default 8080)
  LOYALTY_PARTITIONS      partitions, fixed per data directory (default 64)
  LOYALTY_ACTORS          actor threads (default: one per core)
See docs/operations.md for the full list.
SIGTERM or SIGINT stops gracefully; a second signal exits at once.`;

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      if (rest.includes('--help')) return print(START_HELP);
      return start();
    case 'program':
      return programCommand(rest);
    case 'member':
      return memberCommand(rest);
    case 'adjust':
      return adjustCommand(rest);
    case 'report':
      return reportCommand(rest);
    case undefined:
      process.stderr.write(`${USAGE}\n`);
      return 2;
    case 'help':
    case '--help':
      return print(USAGE);
    default:
      process.stderr.write(`unknown command: ${command}\n${USAGE}\n`);
      return 2;
  }
}

function print(text: string): number {
  process.stdout.write(`${text}\n`);
  return 0;
}

async function start(): Promise<number> {
  let settings;
  let program;
  try {
    settings = loadSettings();
    program = loadProgramFile(settings.programFile);
  } catch (error) {
    return reportStartupError(error);
  }
  const logger = createLogger(settings.logLevel, undefined, settings.logFormat);
  const engine = new Engine({ settings, program, logger });
  let signals = 0;
  const stopped = new Promise<number>((resolve) => {
    let firstSignalAtMs = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      // Ctrl-C under `npm start` arrives twice (the terminal's process group,
      // then npm forwarding it): a repeat within half a second is the same one.
      if (signals > 0 && Date.now() - firstSignalAtMs < 500) return;
      signals += 1;
      if (signals === 1) firstSignalAtMs = Date.now();
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: exiting at once');
        // Not process.exit(): its exit handlers can wait on the actor threads'
        // in-flight writes (seen hanging for more than 15 s). The engine is
        // crash-only: a kill is recovered like any crash, by redelivery from
        // the ack floor.
        process.kill(process.pid, 'SIGKILL');
      }
      logger.info({ signal }, 'stopping: finishing in-flight batches');
      const timer = setTimeout(() => {
        logger.error({ timeoutMs: settings.shutdownTimeoutMs }, 'graceful stop timed out');
        process.exit(1);
      }, settings.shutdownTimeoutMs);
      timer.unref();
      engine.stop().then(
        () => resolve(0),
        (error: unknown) => {
          logger.error({ err: error }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    void engine.failed.then(async (error) => {
      await engine.stop().catch(() => undefined);
      // The last line says why the engine stopped and what to do (the fatal log line has the details).
      process.stderr.write(`${failureLine(error)}\n`);
      resolve(1);
    });
  });
  try {
    await engine.start();
  } catch (error) {
    // One message per failure: a configuration problem (a bad token file) or
    // a known engine error goes to stderr as its own text, like a bad setting
    // before the logger exists; anything else is logged once, with its stack.
    await engine.stop().catch(() => undefined);
    if (error instanceof ConfigError || error instanceof EngineError) return reportStartupError(error);
    logger.fatal({ err: error }, 'engine failed to start');
    return 1;
  }
  return stopped;
}

const PROGRAM_HELP = `usage: loyalty program validate <file>

Checks a program file and lists every bad field.
exit codes: 0 valid, 2 not valid, not readable, or bad usage`;

function programCommand(args: readonly string[]): number {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], allowPositionals: true, options: { help: { type: 'boolean' } } });
  } catch (error) {
    process.stderr.write(`${usageMessage(error) ?? (error as Error).message}\n`);
    return 2;
  }
  const { positionals, values } = parsed;
  if (values.help) return print(PROGRAM_HELP);
  if (positionals[0] !== 'validate' || positionals[1] === undefined || positionals.length > 2) {
    const problem = positionals[0] !== 'validate' ? `expected "validate", got ${positionals[0] === undefined ? 'nothing' : `"${positionals[0]}"`}` : positionals[1] === undefined ? 'expected a program file' : 'expected one program file';
    process.stderr.write(`${problem}\n\n${PROGRAM_HELP}\n`);
    return 2;
  }
  try {
    const program = loadProgramFile(positionals[1]);
    process.stdout.write(`ok: program "${program.id}" (${program.name}) is valid\n`);
    return 0;
  } catch (error) {
    if (error instanceof EngineError && error.code === 'ERR_PROGRAM_FILE_UNREADABLE') {
      process.stderr.write(`error ${error.code}: ${error.message}\n`);
      return 2;
    }
    return reportStartupError(error);
  }
}

/**
 * `error <code>: <message>` for a failure that stopped a running engine. An
 * error from an actor thread arrives as a plain Error (its code does not cross
 * the thread): the code is then the one its message names, `(ERR_…)`.
 */
function failureLine(error: Error): string {
  const own = (error as { code?: unknown }).code;
  const code = isEngineErrorCode(own) ? own : /\((ERR_[A-Z_]+)\)/.exec(error.message)?.[1];
  return code === undefined ? `error: ${error.message}` : `error ${code}: ${error.message}`;
}

function reportStartupError(error: unknown): number {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    return 2;
  }
  if (error instanceof EngineError) {
    process.stderr.write(`error ${error.code}: ${error.message}\n`);
    return 1;
  }
  process.stderr.write(`error: ${(error as Error)?.stack ?? String(error)}\n`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`fatal: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
