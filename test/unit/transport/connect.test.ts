import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nkeys } from '@nats-io/nats-core';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, EngineError } from '../../../src/config/errors.js';
import { loadSettings } from '../../../src/config/settings.js';
import {
  connectNats,
  NATS_RECONNECT_TIME_WAIT_MS,
  natsConnectOptions,
  natsServersOf,
  redactServer,
} from '../../../src/transport/connect.js';

const dir = mkdtempSync(join(tmpdir(), 'loyalty-connect-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

const settings = (overrides: Record<string, unknown>) => loadSettings({}, { actors: 1, ...overrides });

function thrown(action: () => unknown): EngineError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(EngineError);
    return error as EngineError;
  }
  throw new Error('expected an EngineError');
}

const te = new TextEncoder();

function credsFile(name: string, seed: string): string {
  // The layout `nsc generate creds` writes; the JWT is opaque to the client.
  return file(
    name,
    `-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5In0.e30.c2ln\n------END NATS USER JWT------\n\n` +
      `************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n\n` +
      `-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`,
  );
}

describe('natsConnectOptions', () => {
  it('maps comma-separated servers, name and bounded reconnect-forever', () => {
    const options = natsConnectOptions(settings({ natsUrl: 'nats://a:4222, nats://b:4222,,' }), 'loyalty-engine');
    expect(options).toEqual({
      servers: ['nats://a:4222', 'nats://b:4222'],
      name: 'loyalty-engine',
      noAsyncTraces: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: NATS_RECONNECT_TIME_WAIT_MS,
      reconnectJitter: 500,
      reconnectJitterTLS: 1_000,
      timeout: 10_000,
      pingInterval: 20_000,
      maxPingOut: 3,
    });
  });

  it('takes servers from the argument (the embedded server) over settings', () => {
    expect(natsConnectOptions(settings({}), 'x', 'nats://127.0.0.1:4333').servers).toEqual(['nats://127.0.0.1:4333']);
    expect(natsConnectOptions(settings({ natsUrl: 'nats://ignored' }), 'x', ['nats://h1', 'nats://h2']).servers).toEqual(['nats://h1', 'nats://h2']);
  });

  it('refuses to build options without any server', () => {
    const error = thrown(() => natsConnectOptions(settings({ natsUrl: ' , ' }), 'x'));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain('LOYALTY_NATS_URL');
  });

  it('maps user/password and token', () => {
    const options = natsConnectOptions(settings({ natsUrl: 'nats://h', natsUser: 'engine', natsPassword: 's3cret', natsToken: 'tok' }), 'x');
    expect(options).toMatchObject({ user: 'engine', pass: 's3cret', token: 'tok' });
    expect(options.authenticator).toBeUndefined();
  });

  it('maps an nkey seed file to an nkey authenticator that signs the nonce', () => {
    const user = nkeys.createUser();
    const seedFile = file('user.nk', `${new TextDecoder().decode(user.getSeed())}\n`);
    const options = natsConnectOptions(settings({ natsUrl: 'nats://h', natsNkeySeedFile: seedFile }), 'x');
    const authenticator = options.authenticator as (nonce?: string) => { nkey: string; sig: string };
    const auth = authenticator('nonce-1');
    expect(auth.nkey).toBe(user.getPublicKey());
    expect(user.verify(te.encode('nonce-1'), nkeys.decode(auth.sig))).toBe(true);
  });

  it('maps a creds file to a creds authenticator (jwt + signature)', () => {
    const user = nkeys.createUser();
    const path = credsFile('user.creds', new TextDecoder().decode(user.getSeed()));
    const options = natsConnectOptions(settings({ natsUrl: 'nats://h', natsCredsFile: path }), 'x');
    const auth = (options.authenticator as (nonce?: string) => { jwt: string; nkey: string; sig: string })('nonce-2');
    expect(auth.jwt).toBe('eyJhbGciOiJlZDI1NTE5In0.e30.c2ln');
    expect(auth.nkey).toBe(user.getPublicKey());
  });

  it('re-reads a rotated creds file at reconnect, and keeps the last good one if it vanishes', () => {
    const first = nkeys.createUser();
    const second = nkeys.createUser();
    const path = credsFile('rotating.creds', new TextDecoder().decode(first.getSeed()));
    const authenticator = natsConnectOptions(settings({ natsUrl: 'nats://h', natsCredsFile: path }), 'x').authenticator as (nonce?: string) => {
      nkey: string;
    };
    credsFile('rotating.creds', new TextDecoder().decode(second.getSeed()));
    expect(authenticator('n').nkey).toBe(second.getPublicKey());
    rmSync(path);
    expect(authenticator('n').nkey).toBe(second.getPublicKey());
  });

  it('gives a clear error for a missing creds file', () => {
    const missing = join(dir, 'nope.creds');
    const error = thrown(() => natsConnectOptions(settings({ natsUrl: 'nats://h', natsCredsFile: missing }), 'x'));
    expect(error.code).toBe('ERR_NATS_CREDENTIALS');
    expect(error.message).toBe(`LOYALTY_NATS_CREDS_FILE: NATS credentials file ${missing} does not exist`);
  });

  it('gives a clear error for a creds file that is not one', () => {
    const error = thrown(() => natsConnectOptions(settings({ natsUrl: 'nats://h', natsCredsFile: file('bad.creds', 'hello\n') }), 'x'));
    expect(error.code).toBe('ERR_NATS_CREDENTIALS');
    expect(error.message).toContain('is not a NATS credentials file');
  });

  it('gives a clear error for a missing or invalid nkey seed file', () => {
    const missing = join(dir, 'nope.nk');
    const notThere = thrown(() => natsConnectOptions(settings({ natsUrl: 'nats://h', natsNkeySeedFile: missing }), 'x'));
    expect(notThere.code).toBe('ERR_NATS_CREDENTIALS');
    expect(notThere.message).toBe(`LOYALTY_NATS_NKEY_SEED_FILE: nkey seed file ${missing} does not exist`);

    const garbage = thrown(() => natsConnectOptions(settings({ natsUrl: 'nats://h', natsNkeySeedFile: file('garbage.nk', 'SUnotaseed') }), 'x'));
    expect(garbage.code).toBe('ERR_NATS_CREDENTIALS');
    expect(garbage.message).toContain('does not hold a valid nkey seed');

    const account = new TextDecoder().decode(nkeys.createAccount().getSeed());
    const wrongKind = thrown(() => natsConnectOptions(settings({ natsUrl: 'nats://h', natsNkeySeedFile: file('account.nk', account) }), 'x'));
    expect(wrongKind.message).toContain('a user seed (starting with SU) is needed');
  });

  it('refuses both a creds file and an nkey seed file', () => {
    const user = new TextDecoder().decode(nkeys.createUser().getSeed());
    const error = thrown(() =>
      natsConnectOptions(settings({ natsUrl: 'nats://h', natsCredsFile: credsFile('both.creds', user), natsNkeySeedFile: file('both.nk', user) }), 'x'),
    );
    expect(error).toBeInstanceOf(ConfigError);
  });

  it('maps TLS files and checks they exist', () => {
    const ca = file('ca.pem', 'ca');
    const cert = file('cert.pem', 'cert');
    const key = file('key.pem', 'key');
    expect(natsConnectOptions(settings({ natsUrl: 'tls://h:4222', natsTlsCaFile: ca }), 'x').tls).toEqual({ caFile: ca });
    expect(natsConnectOptions(settings({ natsUrl: 'tls://h:4222', natsTlsCaFile: ca, natsTlsCertFile: cert, natsTlsKeyFile: key }), 'x').tls).toEqual({
      caFile: ca,
      certFile: cert,
      keyFile: key,
    });
    expect(natsConnectOptions(settings({ natsUrl: 'nats://h' }), 'x').tls).toBeUndefined();
    const error = thrown(() => natsConnectOptions(settings({ natsUrl: 'tls://h', natsTlsCaFile: join(dir, 'missing-ca.pem') }), 'x'));
    expect(error.code).toBe('ERR_NATS_CREDENTIALS');
    expect(error.message).toContain('LOYALTY_NATS_TLS_CA_FILE: TLS CA file');
  });
});

describe('natsServersOf / redactServer', () => {
  it('splits and trims', () => {
    expect(natsServersOf('')).toEqual([]);
    expect(natsServersOf(' a:1 ,b:2')).toEqual(['a:1', 'b:2']);
  });

  it('masks passwords and tokens in server URLs', () => {
    expect(redactServer('nats://user:pw@host:4222')).toBe('nats://user:***@host:4222');
    expect(redactServer('nats://s3cr3t-token@host:4222')).toBe('nats://***@host:4222');
    expect(redactServer('user:pw@host:4222')).toBe('user:***@host:4222');
    expect(redactServer('nats://host:4222')).toBe('nats://host:4222');
  });
});

describe('connectNats', () => {
  it('wraps a failed connect in ERR_NATS_CONNECT naming the servers, credentials masked', async () => {
    // Port 1 on loopback: nothing listens, the refusal is immediate.
    const error = await connectNats(settings({ natsUrl: 'nats://engine:pw@127.0.0.1:1' }), 'loyalty-engine').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).code).toBe('ERR_NATS_CONNECT');
    expect((error as EngineError).message).toContain('cannot connect to NATS at nats://engine:***@127.0.0.1:1 as "loyalty-engine"');
    expect((error as EngineError).message).not.toContain('pw');
    expect((error as EngineError).cause).toBeDefined();
  });
});
