/** Operating errors carry a stable code and their cause (fastify/undici style). */
export class EngineError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'EngineError';
  }
}

export class ConfigError extends EngineError {
  /** Every bad field, one line each, so an operator fixes them all at once. */
  readonly fields: readonly string[];
  constructor(source: string, fields: readonly string[]) {
    super('ERR_CONFIG_INVALID', `invalid ${source}:\n  - ${fields.join('\n  - ')}`);
    this.fields = fields;
    this.name = 'ConfigError';
  }
}
