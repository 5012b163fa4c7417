/**
 * Children (nats-server, engine) and temp dirs must never outlive the bench:
 * - every start registers an async stop, which SIGINT/SIGTERM run before exiting;
 * - and a synchronous last resort (kill, rm) that runs on process exit, even
 *   after an uncaught exception, when async work is no longer possible.
 */
type Cleanup = () => Promise<unknown>;
type LastResort = () => void;

const cleanups = new Set<Cleanup>();
const lastResorts = new Set<LastResort>();
let installed = false;

/** Returns a function that unregisters both. */
export function registerCleanup(cleanup: Cleanup, lastResort?: LastResort): () => void {
  installHandlers();
  cleanups.add(cleanup);
  if (lastResort !== undefined) lastResorts.add(lastResort);
  return () => {
    cleanups.delete(cleanup);
    if (lastResort !== undefined) lastResorts.delete(lastResort);
  };
}

function installHandlers(): void {
  if (installed) return;
  installed = true;
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping child processes...\n`);
    const pending = [...cleanups].map((cleanup) => cleanup().catch(() => undefined));
    cleanups.clear();
    void Promise.all(pending).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', () => {
    for (const lastResort of lastResorts) {
      try {
        lastResort();
      } catch {
        // Exiting anyway: nothing more can be done here.
      }
    }
  });
}
