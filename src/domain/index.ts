/**
 * The pure loyalty rules core. No I/O: nothing here imports node:, NATS,
 * LMDB or prom-client. See docs/program.md for the program file and
 * DESIGN.md for where this sits in the engine.
 */
export * from './apply.js';
export * from './assert.js';
export * from './compiled.js';
export * from './events.js';
export * from './hash.js';
export * from './ledger.js';
export * from './money.js';
export * from './ports.js';
export * from './program.js';
export * from './rejection.js';
export * from './state.js';
export * from './sweep.js';
export * from './time.js';
export * from './wallet.js';
export { newMember } from './membership.js';
export { tierMeasure } from './tier-measure.js';
