import { describe, expect, it } from 'vitest';
import { bearerTokenOf, isLoopback, loadApiTokens, roleAllows } from '../../../src/api/auth.js';
import { ConfigError } from '../../../src/config/errors.js';

const T = (suffix: string) => `token-${suffix}-0123456789abcdef`;

describe('API tokens', () => {
  it('parses LOYALTY_API_TOKENS and a tokens file (names, comments, blank lines)', () => {
    const file = `# operators\nadmin:${T('a')}:root\n\n  write:${T('w')}:alice   # support desk\nread:${T('r')}\n`;
    const table = loadApiTokens({ apiTokens: `read:${T('env')}, write:${T('env-w')}:ci`, apiTokensFile: '/etc/tokens' }, () => file);
    expect(table.size).toBe(5);
    expect(table.identify(T('a'))).toEqual({ role: 'admin', name: 'root' });
    expect(table.identify(T('w'))).toEqual({ role: 'write', name: 'alice' });
    expect(table.identify(T('env-w'))).toEqual({ role: 'write', name: 'ci' });
    expect(table.identify(T('r'))).toMatchObject({ role: 'read', name: expect.stringMatching(/^read-[0-9a-f]{8}$/) });
    expect(table.identify('nope')).toBeUndefined();
    expect(table.identify(`${T('a')}x`)).toBeUndefined();
    expect(JSON.stringify(table.describe())).not.toContain(T('a'));
  });

  it('names every bad entry and line at once, never echoing a token', () => {
    const file = `admin:${T('ok')}\nboss:${T('x')}\nwrite:tiny99\nread\nread:${T('y')}:bad name!\nwrite:${'t'.repeat(20)} spaces\n`;
    let error: unknown;
    try {
      loadApiTokens({ apiTokens: `reader:${T('z')},`, apiTokensFile: 'tokens.txt' }, () => file);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const fields = (error as ConfigError).fields;
    expect(fields).toEqual([
      expect.stringMatching(/^LOYALTY_API_TOKENS entry 1: unknown role "reader"/),
      expect.stringMatching(/^tokens.txt line 2: unknown role "boss"/),
      expect.stringMatching(/^tokens.txt line 3: token is shorter than 16/),
      expect.stringMatching(/^tokens.txt line 4: expected "role:token"/),
      expect.stringMatching(/^tokens.txt line 5: name must be/),
      expect.stringMatching(/^tokens.txt line 6: token may hold only/),
    ]);
    expect((error as Error).message).not.toContain(T('x'));
    expect((error as Error).message).not.toContain('tiny99');
  });

  it('refuses the same token with two roles, and a missing file', () => {
    expect(() => loadApiTokens({ apiTokens: `read:${T('same')},admin:${T('same')}` })).toThrow(/twice with different roles/);
    expect(() =>
      loadApiTokens({ apiTokens: '', apiTokensFile: '/nope' }, () => {
        throw new Error('ENOENT: no such file');
      }),
    ).toThrow(/LOYALTY_API_TOKENS_FILE: cannot read \/nope/);
    expect(loadApiTokens({ apiTokens: `read:${T('same')},read:${T('same')}` }).size).toBe(1);
  });

  it('orders roles read < write < admin', () => {
    expect(roleAllows('admin', 'write')).toBe(true);
    expect(roleAllows('write', 'read')).toBe(true);
    expect(roleAllows('write', 'admin')).toBe(false);
    expect(roleAllows('read', 'write')).toBe(false);
  });

  it('reads bearer headers and loopback addresses', () => {
    expect(bearerTokenOf('Bearer abc')).toBe('abc');
    expect(bearerTokenOf('bearer   abc  ')).toBe('abc');
    expect(bearerTokenOf('Basic abc')).toBeUndefined();
    expect(bearerTokenOf('Bearer a b')).toBeUndefined();
    expect(bearerTokenOf(undefined)).toBeUndefined();
    expect(['127.0.0.1', '::1', '::ffff:127.0.0.1', 'localhost', '[::1]'].every(isLoopback)).toBe(true);
    expect(['0.0.0.0', '::', '10.0.0.1', '192.168.1.2', undefined].some(isLoopback)).toBe(false);
  });
});
