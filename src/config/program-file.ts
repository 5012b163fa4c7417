import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { programSchema, type Program } from '../domain/program.js';
import { ConfigError, EngineError } from './errors.js';

/**
 * Bounds checked before the YAML parser sees the text: a program is a few
 * kilobytes and a handful of levels deep. Without them a 20 MB string took
 * 16 s and 450 MB to refuse, and 200,000 nested brackets 3 s and 200 MB (the
 * parser recursing to a stack overflow). Aliases are bounded by the parser
 * (maxAliasCount: "billion laughs" is refused at once).
 */
export const PROGRAM_TEXT_CHARS_MAX = 1_048_576;
export const PROGRAM_NESTING_MAX = 64;
const PROGRAM_INDENT_MAX = 256;
const YAML_ALIAS_COUNT_MAX = 100;

/** Why the text is refused unparsed, or undefined. Flow brackets are counted outside quotes; block nesting by indentation. */
function oversizedProgram(text: string): string | undefined {
  if (text.length > PROGRAM_TEXT_CHARS_MAX) return `${text.length} characters, more than ${PROGRAM_TEXT_CHARS_MAX}: a program is a few kilobytes`;
  let depth = 0;
  let quote: string | undefined;
  let indent = 0;
  let lineStart = true;
  for (let index = 0; index < text.length; index++) {
    const char = text[index]!;
    if (char === '\n') {
      lineStart = true;
      indent = 0;
      continue;
    }
    if (lineStart) {
      if (char === ' ') {
        indent += 1;
        if (indent > PROGRAM_INDENT_MAX) return `a line indented more than ${PROGRAM_INDENT_MAX} columns: nested too deep`;
        continue;
      }
      lineStart = false;
    }
    if (quote !== undefined) {
      if (char === '\\' && quote === '"') index += 1;
      else if (char === quote) quote = undefined;
      continue;
    }
    if (char === '"' || char === "'") quote = char;
    else if (char === '#') {
      const end = text.indexOf('\n', index);
      index = end < 0 ? text.length : end - 1;
    } else if (char === '[' || char === '{') {
      depth += 1;
      if (depth > PROGRAM_NESTING_MAX) return `brackets nested more than ${PROGRAM_NESTING_MAX} deep`;
    } else if (char === ']' || char === '}') depth = Math.max(0, depth - 1);
  }
  return undefined;
}

/** Parses program text (YAML or JSON; JSON is YAML). Every bad field is named at once. */
export function parseProgramText(text: string, source = 'program'): Program {
  const oversized = oversizedProgram(text);
  if (oversized !== undefined) throw new ConfigError(source, [`(file): refused unparsed: ${oversized}. Check that this is the program file you meant.`]);
  let raw: unknown;
  try {
    raw = parseYaml(text, { strict: true, uniqueKeys: true, maxAliasCount: YAML_ALIAS_COUNT_MAX });
  } catch (error) {
    throw new ConfigError(source, [`(file): not valid YAML or JSON: ${(error as Error).message}`]);
  }
  const parsed = programSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      source,
      parsed.error.issues.map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`),
    );
  }
  return deepFreeze(parsed.data);
}

export function loadProgramFile(path: string): Program {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new EngineError('ERR_PROGRAM_FILE_UNREADABLE', `cannot read program file ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parseProgramText(text, `program file ${path}`);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}
