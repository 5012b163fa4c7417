export * from './apply.js';
export * from './assert.js';
export * from './events.js';
export * from './money.js';
export * from './program.js';
export * from './state.js';
