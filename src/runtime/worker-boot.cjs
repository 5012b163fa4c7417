// The entry of a worker thread whose code is TypeScript (development and tests;
// src/runtime/worker-thread.ts picks it): a worker
// thread of Node 20 gets tsx's require hook but not its ESM loader hooks, so
// the TypeScript entry is loaded with require, as Piscina loads the actors.
// Under vitest the thread has no tsx hook at all: it is registered here
// (registering it again under tsx is harmless). Built (dist/), the threads
// start their .js entries directly and this file is not used.
require('tsx/cjs');
require(process.argv[process.argv.length - 1]);
