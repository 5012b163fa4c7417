import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 right now (the OS picks it; a small race remains until it is bound again). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('could not read the port of a listening socket'));
        return;
      }
      const port = address.port;
      server.close(() => resolve(port));
    });
  });
}
