import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { nkeys } from '@nats-io/nats-core';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { EngineError } from '../../src/config/errors.js';
import { loadSettings } from '../../src/config/settings.js';
import { connectNats } from '../../src/transport/connect.js';
import {
  findNatsServerBinary,
  NatsServerSupervisor,
  startNatsServer,
  type NatsServerHandle,
} from '../../src/transport/nats-server.js';
import { connectTest, startTestNatsServer, testNatsServerBinary, type TestNatsServer } from '../helpers/nats-server.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  // Reverse order: clients close before their servers stop.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'loyalty-nats-it-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function server(extraConfig?: string): Promise<TestNatsServer> {
  const started = await startTestNatsServer({ extraConfig });
  cleanups.push(() => started.stop());
  return started;
}

async function client(url: string): Promise<NatsConnection> {
  const connection = await connectTest(url);
  cleanups.push(() => connection.close());
  return connection;
}

describe('embedded nats-server', () => {
  it('finds the installed binary', async () => {
    const binary = await findNatsServerBinary({ autoInstall: false });
    expect(binary).toMatch(/\/nats-server$/);
    // Found even when PATH lacks /usr/sbin (a non-root shell on Debian).
    expect(await findNatsServerBinary({ autoInstall: false, searchPath: '/nonexistent' })).toBe('/usr/sbin/nats-server');
  });

  it('starts on a free port with JetStream and does a publish/consume round trip, then stops', async () => {
    const started = await server();
    expect(started.url).toBe(`nats://127.0.0.1:${started.port}`);
    const connection = await client(started.url);
    const manager = await jetstreamManager(connection);
    await manager.streams.add({ name: 'ROUND_TRIP', subjects: ['round.trip.>'] });
    const js = jetstream(connection);
    for (let index = 0; index < 10; index++) {
      const ack = await js.publish(`round.trip.${index}`, `payload-${index}`);
      expect(ack.seq).toBe(index + 1);
    }
    await manager.consumers.add('ROUND_TRIP', { durable_name: 'reader', ack_policy: 'explicit' });
    const consumer = await js.consumers.get('ROUND_TRIP', 'reader');
    const batch = await consumer.fetch({ max_messages: 10, expires: 2_000 });
    const received: string[] = [];
    for await (const message of batch) {
      received.push(message.string());
      message.ack();
    }
    expect(received).toEqual(Array.from({ length: 10 }, (_, index) => `payload-${index}`));

    await connection.close();
    await started.stop();
    expect(await started.handle.exited).toBe(0);
  });

  it('refuses a taken port with ERR_NATS_PORT_IN_USE', async () => {
    const running = await server();
    const error = await startNatsServer({
      binary: await testNatsServerBinary(),
      storeDir: await tempDir(),
      port: running.port,
      startTimeoutMs: 5_000,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).code).toBe('ERR_NATS_PORT_IN_USE');
    expect((error as EngineError).message).toContain(`client port ${running.port}`);
  });

  it('reports a bad config with the server output', async () => {
    const error = await startNatsServer({
      binary: await testNatsServerBinary(),
      storeDir: await tempDir(),
      port: 0,
      extraConfig: 'mappings = {',
      startTimeoutMs: 5_000,
    }).catch((caught: unknown) => caught);
    expect((error as EngineError).code).toBe('ERR_NATS_SERVER_START');
    expect((error as EngineError).message).toMatch(/exited with code 1[\s\S]*Parse error/);
  });

  it('stops a server orphaned on the same store directory before starting', async () => {
    const storeDir = await tempDir();
    const binary = await testNatsServerBinary();
    const orphan = await startNatsServer({ binary, storeDir, port: 0 });
    cleanups.push(() => orphan.stop());
    // As if the engine had crashed: nobody stops the first server, the next start finds it.
    const next = await startNatsServer({ binary, storeDir, port: orphan.port });
    cleanups.push(() => next.stop());
    expect(await orphan.exited).toBe(0);
    expect(next.port).toBe(orphan.port);
  });

  it('supervisor restarts a killed server on the same port and a client reconnects', async () => {
    const storeDir = await tempDir();
    const supervisor = new NatsServerSupervisor({
      binary: await testNatsServerBinary(),
      storeDir,
      port: 0,
      restartDelayMsInitial: 50,
      restartDelayMsMax: 500,
      restartsPerMinuteMax: 3,
    });
    const errors: EngineError[] = [];
    supervisor.on('error', (error) => errors.push(error));
    cleanups.push(() => supervisor.stop());
    const first: NatsServerHandle = await supervisor.start();
    const connection = await client(first.url);
    const manager = await jetstreamManager(connection);
    await manager.streams.add({ name: 'DURABLE', subjects: ['durable.>'] });
    const js = jetstream(connection);
    await js.publish('durable.a', 'before crash');

    const reconnected = (async () => {
      for await (const status of connection.status()) if (status.type === 'reconnect') return true;
      return false;
    })();
    const restarted = new Promise<NatsServerHandle>((resolvePromise) => supervisor.once('started', (handle) => resolvePromise(handle)));
    first.kill(); // kill -9: no graceful shutdown
    expect(await first.exited).toBeNull();

    const second = await restarted;
    expect(second.pid).not.toBe(first.pid);
    expect(second.port).toBe(first.port);
    expect(await reconnected).toBe(true);
    // The file store survived the crash, and the reconnected client publishes again.
    await js.publish('durable.a', 'after crash');
    expect((await manager.streams.info('DURABLE')).state.messages).toBe(2);

    await supervisor.stop();
    expect(await second.exited).toBe(0);
    expect(supervisor.current).toBeUndefined();
    expect(errors).toEqual([]);
  });

  it('supervisor gives up with an error event after too many restarts in a minute', async () => {
    const supervisor = new NatsServerSupervisor({
      binary: await testNatsServerBinary(),
      storeDir: await tempDir(),
      port: 0,
      restartDelayMsInitial: 10,
      restartDelayMsMax: 20,
      restartsPerMinuteMax: 2,
    });
    cleanups.push(() => supervisor.stop());
    const gaveUp = new Promise<EngineError>((resolvePromise) => supervisor.once('error', resolvePromise));
    supervisor.on('started', (handle) => handle.kill());
    await supervisor.start(); // killed at once by the listener above, and after each restart
    const error = await gaveUp;
    expect(error.code).toBe('ERR_NATS_SERVER_CRASHING');
    expect(supervisor.failed).toBe(error);
    expect(supervisor.current).toBeUndefined();
  });

  it('connectNats authenticates with an nkey seed file and with user/password against a real server', async () => {
    const user = nkeys.createUser();
    const seedFile = join(await tempDir(), 'engine.nk');
    await writeFile(seedFile, `${new TextDecoder().decode(user.getSeed())}\n`);
    const secured = await server(
      `authorization {\n  users = [\n    { nkey: "${user.getPublicKey()}" }\n    { user: "engine", password: "s3cret" }\n  ]\n}`,
    );
    const viaNkey = await connectNats(loadSettings({}, { actors: 1, natsNkeySeedFile: seedFile }), 'engine-nkey', secured.url);
    cleanups.push(() => viaNkey.close());
    await viaNkey.flush();
    const viaPassword = await connectNats(loadSettings({}, { actors: 1, natsUrl: secured.url, natsUser: 'engine', natsPassword: 's3cret' }), 'engine-user');
    cleanups.push(() => viaPassword.close());
    await viaPassword.flush();

    const refused = await connectNats(loadSettings({}, { actors: 1, natsUrl: secured.url, natsUser: 'engine', natsPassword: 'wrong' }), 'engine-bad').catch(
      (caught: unknown) => caught,
    );
    expect((refused as EngineError).code).toBe('ERR_NATS_CONNECT');
    expect((refused as EngineError).message).toMatch(/as "engine-bad": .*(auth|Authorization)/i);
  });

  it('supervisor stopped while its first server starts leaves nothing running', async () => {
    const supervisor = new NatsServerSupervisor({ binary: await testNatsServerBinary(), storeDir: await tempDir(), port: 0 });
    const starting = supervisor.start().catch((caught: unknown) => caught);
    await supervisor.stop();
    const outcome = await starting;
    expect((outcome as EngineError).code).toBe('ERR_NATS_SUPERVISOR_STATE');
    expect(supervisor.current).toBeUndefined();
  });
});
