import { findNatsServerBinary } from '../src/transport/nats-server.js';

/**
 * Integration tests need a real nats-server. On a fresh machine of this kind it
 * is installed once from Debian's packages (as root), exactly as `npm start`
 * would; elsewhere the error says how to install it.
 */
export default async function setup(): Promise<void> {
  await findNatsServerBinary({ autoInstall: true, log: (message) => process.stderr.write(`[test setup] ${message}\n`) });
}
