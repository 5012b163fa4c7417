import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/errors.js';

/**
 * API bearer tokens and roles. read < write < admin: each role may do what the
 * roles below it may. Tokens come from LOYALTY_API_TOKENS ("role:token" or
 * "role:token:name", comma separated) and/or LOYALTY_API_TOKENS_FILE (one such
 * entry per line, # comments). Only SHA-256 hashes are kept in memory, and a
 * presented token is compared with every one of them in constant time, so the
 * response time tells nothing about how much of a token was right.
 */

export type Role = 'read' | 'write' | 'admin';
export const ROLES: readonly Role[] = ['read', 'write', 'admin'];
const ROLE_RANK: Readonly<Record<Role, number>> = { read: 1, write: 2, admin: 3 };

export function roleAllows(held: Role, required: Role): boolean {
  return ROLE_RANK[held] >= ROLE_RANK[required];
}

/** Who made a request: the token's role and name (the name is the `operator` of adjustments). */
export interface Principal {
  readonly role: Role;
  readonly name: string;
}

interface TokenEntry extends Principal {
  readonly hash: Buffer;
}

/** A token table as structured-cloneable data: SHA-256 hashes, roles and names. */
export type TokenTableData = readonly { readonly role: Role; readonly name: string; readonly hash: Uint8Array }[];

/** RFC 6750 b64token characters; at least 16 of them (e.g. `openssl rand -hex 32`). */
export const TOKEN_PATTERN = /^[A-Za-z0-9._~+/=-]+$/;
export const TOKEN_LENGTH_MIN = 16;
export const TOKEN_LENGTH_MAX = 512;
export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9_.@-]{1,128}$/;
const TOKENS_MAX = 10_000;
/** Authorization headers remembered per token table (only headers of known tokens). */
export const PRINCIPAL_CACHE_MAX = 1_024;
/** Longer headers are never remembered: "Bearer " + a 512-character token + some blanks. */
const CACHED_HEADER_LENGTH_MAX = 600;

/** What an Authorization header says: no usable bearer token, an unknown one, or who it is. */
export type Identification =
  | { readonly kind: 'missing' }
  | { readonly kind: 'unknown' }
  | { readonly kind: 'known'; readonly principal: Principal };

const MISSING: Identification = Object.freeze({ kind: 'missing' });
const UNKNOWN: Identification = Object.freeze({ kind: 'unknown' });

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export class TokenTable {
  private readonly entries: readonly TokenEntry[];
  /**
   * Authorization header (the raw string) → its identification, for headers
   * that named a known token: a client on keep-alive sends the same header
   * every time, and hashing it again costs ~5 % of a wallet read. Unknown and
   * malformed headers are never remembered (they cannot fill it, and an
   * unknown token is hashed and compared every time). The table is immutable
   * (tokens change with a restart), so nothing remembered can go stale; the
   * cache lives and dies with its table. Bounded: the oldest header goes first.
   */
  private readonly known = new Map<string, Identification>();

  constructor(entries: readonly TokenEntry[]) {
    this.entries = entries;
  }

  get size(): number {
    return this.entries.length;
  }

  /** The principal of a presented token, or undefined. Compares with every entry, no early exit. */
  identify(presented: string): Principal | undefined {
    const hash = sha256(presented);
    let found: TokenEntry | undefined;
    for (const entry of this.entries) {
      if (timingSafeEqual(hash, entry.hash) && found === undefined) found = entry;
    }
    return found === undefined ? undefined : { role: found.role, name: found.name };
  }

  /**
   * The identification of an `Authorization` header value. A header seen
   * before with a known token is found in a map; any other is parsed, hashed
   * and compared with every entry in constant time (identify).
   */
  identifyHeader(header: string | undefined): Identification {
    if (header === undefined) return MISSING;
    const remembered = this.known.get(header);
    if (remembered !== undefined) return remembered;
    const token = bearerTokenOf(header);
    if (token === undefined) return MISSING;
    const principal = this.identify(token);
    if (principal === undefined) return UNKNOWN;
    const identification: Identification = Object.freeze({ kind: 'known', principal: Object.freeze(principal) });
    if (header.length <= CACHED_HEADER_LENGTH_MAX) {
      if (this.known.size >= PRINCIPAL_CACHE_MAX) this.known.delete(this.known.keys().next().value as string);
      this.known.set(header, identification);
    }
    return identification;
  }

  /** The table as plain data (roles, names, hashes; never a token), to hand to another thread. */
  toData(): TokenTableData {
    return this.entries.map(({ role, name, hash }) => ({ role, name, hash: new Uint8Array(hash) }));
  }

  /** A table from toData(), in another thread. */
  static fromData(data: TokenTableData): TokenTable {
    return new TokenTable(data.map(({ role, name, hash }) => ({ role, name, hash: Buffer.from(hash) })));
  }

  /** Headers remembered now (tests). */
  get rememberedHeaders(): number {
    return this.known.size;
  }

  /** Names and roles, for logs (never the tokens). */
  describe(): { readonly role: Role; readonly name: string }[] {
    return this.entries.map(({ role, name }) => ({ role, name }));
  }
}

interface RawEntry {
  readonly where: string;
  readonly text: string;
}

/**
 * Parses entries; each problem names its place (never the token itself).
 * Pushes into `problems` rather than throwing, so every bad entry is reported at once.
 */
function parseEntries(raw: readonly RawEntry[], problems: string[]): TokenEntry[] {
  const entries: TokenEntry[] = [];
  for (const { where, text } of raw) {
    const parts = text.split(':');
    if (parts.length < 2 || parts.length > 3) {
      problems.push(`${where}: expected "role:token" or "role:token:name"`);
      continue;
    }
    const [role, token, name] = parts as [string, string, string | undefined];
    let ok = true;
    if (!(ROLES as readonly string[]).includes(role)) {
      problems.push(`${where}: unknown role "${role.slice(0, 32)}" (one of ${ROLES.join(', ')})`);
      ok = false;
    }
    if (token.length < TOKEN_LENGTH_MIN) {
      problems.push(`${where}: token is shorter than ${TOKEN_LENGTH_MIN} characters (generate one with \`openssl rand -hex 32\`)`);
      ok = false;
    } else if (token.length > TOKEN_LENGTH_MAX) {
      problems.push(`${where}: token is longer than ${TOKEN_LENGTH_MAX} characters`);
      ok = false;
    } else if (!TOKEN_PATTERN.test(token)) {
      problems.push(`${where}: token may hold only letters, digits and . _ ~ + / = -`);
      ok = false;
    }
    if (name !== undefined && !TOKEN_NAME_PATTERN.test(name)) {
      problems.push(`${where}: name must be 1-128 letters, digits or _ . @ -`);
      ok = false;
    }
    if (!ok) continue;
    const hash = sha256(token);
    // An unnamed token is named by its role and a short hash prefix: stable, and it reveals nothing usable.
    entries.push({ role: role as Role, name: name ?? `${role}-${hash.toString('hex').slice(0, 8)}`, hash });
  }
  return entries;
}

/** Entries of LOYALTY_API_TOKENS: comma separated, blanks ignored. */
export function tokenEntriesOfList(list: string): RawEntry[] {
  return list
    .split(',')
    .map((text, index) => ({ where: `LOYALTY_API_TOKENS entry ${index + 1}`, text: text.trim() }))
    .filter((entry) => entry.text.length > 0);
}

/** Entries of a tokens file: one per line, # starts a comment, blank lines ignored. */
export function tokenEntriesOfFile(text: string, path: string): RawEntry[] {
  return text
    .split(/\r?\n/)
    .map((line, index) => ({ where: `${path} line ${index + 1}`, text: line.replace(/#.*$/, '').trim() }))
    .filter((entry) => entry.text.length > 0);
}

export interface TokenSources {
  readonly apiTokens: string;
  readonly apiTokensFile?: string | undefined;
}

/**
 * The token table from settings; a ConfigError names every bad entry and line.
 * The same token twice with different roles is an error (which one would win?).
 */
export function loadApiTokens(sources: TokenSources, readFile: (path: string) => string = (path) => readFileSync(path, 'utf8')): TokenTable {
  const problems: string[] = [];
  const raw = tokenEntriesOfList(sources.apiTokens);
  if (sources.apiTokensFile !== undefined && sources.apiTokensFile !== '') {
    try {
      raw.push(...tokenEntriesOfFile(readFile(sources.apiTokensFile), sources.apiTokensFile));
    } catch (error) {
      problems.push(`LOYALTY_API_TOKENS_FILE: cannot read ${sources.apiTokensFile}: ${(error as Error).message}`);
    }
  }
  if (raw.length > TOKENS_MAX) problems.push(`at most ${TOKENS_MAX} tokens (got ${raw.length})`);
  const entries = parseEntries(raw, problems);
  const seen = new Map<string, { role: Role; index: number }>();
  const unique: TokenEntry[] = [];
  entries.forEach((entry, index) => {
    const key = entry.hash.toString('hex');
    const previous = seen.get(key);
    if (previous === undefined) {
      seen.set(key, { role: entry.role, index });
      unique.push(entry);
    } else if (previous.role !== entry.role) {
      problems.push(`the same token is given twice with different roles (${previous.role} and ${entry.role}, names ${unique[previous.index]?.name ?? '?'} and ${entry.name})`);
    }
  });
  if (problems.length > 0) throw new ConfigError('API tokens', problems);
  return new TokenTable(unique);
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerTokenOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(header);
  return match?.[1];
}

/** True for addresses of this machine (the only clients a loopback-bound server can have). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const bare = address.replace(/^\[|\]$/g, '').toLowerCase();
  return bare === 'localhost' || bare === '::1' || bare.startsWith('127.') || bare.startsWith('::ffff:127.');
}
