import { sleep } from './engine-process.js';

/** One /health answer: its status code and JSON body (null when the engine did not answer). */
export interface HealthAnswer {
  readonly status: number;
  readonly body: Record<string, unknown> | null;
}

export async function health(httpPort: number, timeoutMs = 2_000): Promise<HealthAnswer> {
  try {
    const response = await fetch(`http://127.0.0.1:${httpPort}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  } catch {
    return { status: 0, body: null };
  }
}

/** Polls /health until `accept` holds; returns that answer, or throws with the last one seen. */
export async function waitForHealth(httpPort: number, accept: (answer: HealthAnswer) => boolean, timeoutMs: number, what: string): Promise<HealthAnswer> {
  const deadline = Date.now() + timeoutMs;
  let last: HealthAnswer = { status: 0, body: null };
  while (Date.now() < deadline) {
    last = await health(httpPort);
    if (accept(last)) return last;
    await sleep(100);
  }
  throw new Error(`timed out waiting for /health to show ${what}; last answer ${last.status} ${JSON.stringify(last.body)}`);
}
