import { readFileSync, writeFileSync } from 'node:fs';

/**
 * What the operator commands (member, adjust, report) share: the API's URL
 * and token, an HTTP client that turns the API's JSON errors into one line,
 * and injectable I/O for tests. The commands talk to a running engine's HTTP
 * API only (never to its data directory), so they see what the API enforces:
 * roles, validation, the single writer.
 */

export interface CommandIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly fetch: typeof fetch;
  readonly readFile: (path: string) => string;
  readonly writeFile: (path: string, text: string) => void;
  readonly sleep: (ms: number) => Promise<void>;
  /** stderr is a terminal: progress redraws one line. */
  readonly interactive: boolean;
}

export function processIo(): CommandIo {
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    fetch: globalThis.fetch,
    readFile: (path) => readFileSync(path, 'utf8'),
    // Reports hold member ids: readable by the owner only.
    writeFile: (path, text) => writeFileSync(path, text, { mode: 0o600 }),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    interactive: process.stderr.isTTY === true,
  };
}

export const API_URL_DEFAULT = 'http://127.0.0.1:8080';

export const CONNECTION_HELP = `connection:
  --url <url>          engine HTTP API (default: $LOYALTY_API_URL, else ${API_URL_DEFAULT})
  --token <token>      bearer token (default: $LOYALTY_API_TOKEN; prefer the variable or
                       --token-file: a command line is visible to every user of the host)
  --token-file <path>  read the token from a file`;

export const CONNECTION_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** A usage error (exit 2) or a failed call (exit 1), with a message for people. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
  }
}

export interface ApiResponse {
  readonly status: number;
  readonly text: string;
  readonly contentType: string;
  json<T = Record<string, unknown>>(): T;
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
    private readonly io: CommandIo,
  ) {}

  static from(values: { url?: string | undefined; token?: string | undefined; 'token-file'?: string | undefined }, io: CommandIo): ApiClient {
    const url = (values.url ?? io.env.LOYALTY_API_URL ?? API_URL_DEFAULT).replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+/.test(url)) throw new CommandError(`--url must be an http(s) URL, got "${url}"`, 2);
    let token = values.token ?? io.env.LOYALTY_API_TOKEN;
    if (values['token-file'] !== undefined) {
      try {
        token = io.readFile(values['token-file']).trim();
      } catch (error) {
        throw new CommandError(`cannot read --token-file ${values['token-file']}: ${(error as Error).message}`, 2);
      }
    }
    return new ApiClient(url, token === '' ? undefined : token, io);
  }

  async request(method: string, path: string, options: { body?: string; contentType?: string; headers?: Record<string, string>; accept?: string } = {}): Promise<ApiResponse> {
    const headers: Record<string, string> = { accept: options.accept ?? 'application/json', ...options.headers };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    if (options.contentType !== undefined) headers['content-type'] = options.contentType;
    let response: Response;
    try {
      response = await this.io.fetch(`${this.baseUrl}${path}`, { method, headers, ...(options.body !== undefined ? { body: options.body } : {}) });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new CommandError(`cannot reach the engine API at ${this.baseUrl}: ${cause?.code ?? cause?.message ?? (error as Error).message} (is the engine running? --url / LOYALTY_API_URL)`);
    }
    const text = await response.text();
    return {
      status: response.status,
      text,
      contentType: response.headers.get('content-type') ?? '',
      json: <T,>() => JSON.parse(text) as T,
    };
  }

  /** The response when 2xx, else a CommandError carrying the API's code and message. */
  async call(method: string, path: string, options: Parameters<ApiClient['request']>[2] = {}): Promise<ApiResponse> {
    const response = await this.request(method, path, options);
    if (response.status >= 200 && response.status < 300) return response;
    throw new CommandError(describeError(response));
  }
}

export function describeError(response: ApiResponse): string {
  try {
    const { error } = response.json<{ error: { code: string; message: string } }>();
    const hint =
      error.code === 'UNAUTHORIZED'
        ? ' (set LOYALTY_API_TOKEN or --token-file)'
        : error.code === 'FORBIDDEN' || error.code === 'NO_TOKENS_CONFIGURED'
          ? ' (this needs a token with a higher role)'
          : '';
    return `${error.code} (HTTP ${response.status}): ${error.message}${hint}`;
  } catch {
    return `HTTP ${response.status}: ${response.text.slice(0, 200)}`;
  }
}

export function formatNumber(value: number): string {
  return value.toLocaleString('en-US');
}

export function day(iso: string | null | undefined): string {
  return iso === null || iso === undefined ? '-' : iso.slice(0, 10);
}

/** The exit code of a failed command, its message on stderr. */
export function fail(error: unknown, io: CommandIo): number {
  if (error instanceof CommandError) {
    io.stderr(`${error.message}\n`);
    return error.exitCode;
  }
  const usage = usageMessage(error);
  if (usage !== undefined) {
    io.stderr(`${usage}\n`);
    return 2;
  }
  io.stderr(`error: ${(error as Error)?.message ?? String(error)}\n`);
  return 1;
}

/**
 * A readable message for Node's parseArgs errors (undefined for any other
 * error): the option named, what was expected, never Node's advice about '--'.
 */
export function usageMessage(error: unknown): string | undefined {
  const code = String((error as { code?: unknown })?.code ?? '');
  if (!code.startsWith('ERR_PARSE_ARGS')) return undefined;
  const message = (error as Error).message;
  const named = /'([^']*)'/.exec(message)?.[1] ?? '';
  const option = named.split(' ')[0]!;
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      if (/^-\d/.test(option)) {
        return `points must be a whole number above 0, got "${option}" (to take points away: loyalty adjust <memberId> debit ${option.slice(1)} --reason <text>)`;
      }
      return `unknown option ${option} (see --help)`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/argument missing/.test(message)) return `${option} needs a value (see --help)`;
      if (/does not take an argument/.test(message)) return `${option} takes no value (see --help)`;
      return `${option}: bad value (see --help)`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${named}": this command takes options only (see --help)`;
    default:
      return `${message} (see --help)`;
  }
}
