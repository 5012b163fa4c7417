// The API thread's entry under tsx (development and tests; src/api/thread.ts
// picks it): a worker thread of Node 20 gets tsx's require hook but not its
// ESM loader hooks, so the TypeScript entry is loaded with require, as Piscina
// loads the actors. Built (dist/), the thread starts worker.js directly.
require(process.argv[process.argv.length - 1]);
