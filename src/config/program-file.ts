import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { programSchema, type Program } from '../domain/program.js';
import { ConfigError, EngineError } from './errors.js';

/** Parses program text (YAML or JSON; JSON is YAML). Every bad field is named at once. */
export function parseProgramText(text: string, source = 'program'): Program {
  let raw: unknown;
  try {
    raw = parseYaml(text, { strict: true, uniqueKeys: true });
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
