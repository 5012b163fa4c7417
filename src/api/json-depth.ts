/**
 * JSON bodies nest at most this deep. The API's documents (events, programs,
 * adjustments) nest under ten levels; the bound is the program file's
 * (PROGRAM_NESTING_MAX). Why a bound at all: a body of 100,000 `[` (200 KB,
 * under the body limit) parses, but every recursive walk after it (the
 * prototype-poisoning scan, zod, msgpack) overflows the stack, which used to
 * answer 500 (issue 14).
 */
export const JSON_NESTING_MAX = 64;

/**
 * Why `text` may not be parsed, or undefined. One pass over the characters,
 * skipping string contents (a `[` inside a string is not nesting); no
 * allocation, so a hostile body costs its length and nothing more.
 */
export function jsonNestingError(text: string, max = JSON_NESTING_MAX): string | undefined {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (inString) {
      if (code === 0x5c) index += 1; // backslash: skip the escaped character
      else if (code === 0x22) inString = false;
    } else if (code === 0x22) inString = true;
    else if (code === 0x5b || code === 0x7b) {
      depth += 1;
      if (depth > max) return `JSON nested more than ${max} levels deep`;
    } else if (code === 0x5d || code === 0x7d) depth -= 1;
  }
  return undefined;
}
