/**
 * Programmer-error assertions. They stay on in production: a broken invariant
 * in a balance is worse than a crash, because the crash is redelivered and the
 * corruption is not (TigerBeetle's TIGER_STYLE).
 */
export class AssertionError extends Error {
  readonly code = 'ERR_ASSERTION';
  constructor(message: string) {
    super(message);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function assertSafeInteger(value: number, what: string): void {
  // The message is built only on failure: this runs several times per ledger entry.
  if (!Number.isSafeInteger(value)) throw new AssertionError(`${what} must be a safe integer, got ${value}`);
}
