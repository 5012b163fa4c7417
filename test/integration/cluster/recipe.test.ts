import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { envNameOf, loadSettings, settingsSchema } from '../../../src/config/settings.js';
import { findNatsServerBinary } from '../../../src/transport/nats-server.js';
import { PARTITION_MAPPING } from '../../helpers/cluster-engines.js';

/**
 * The 3 servers + 3 engines recipe of deploy/cluster/ (docs/operations.md,
 * "Cluster topology"), checked without running it: the server configs parse
 * (`nats-server -t`) and form one cluster with the mapping cluster mode needs,
 * the compose file's engines carry settings the engine accepts, and local.sh
 * is valid bash that agrees with both and refuses without nats-server.
 */
const root = fileURLToPath(new URL('../../../', import.meta.url));
const deploy = join(root, 'deploy/cluster');
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const SERVERS = ['n1', 'n2', 'n3'] as const;
const ENGINES = ['e1', 'e2', 'e3'] as const;

interface ServerConfig {
  readonly name: string;
  readonly clientPort: number;
  readonly monitorPort: number;
  readonly clusterName: string;
  readonly clusterPort: number;
  readonly routePorts: number[];
  readonly storeDir: string;
  readonly mapping: string;
}

function match(text: string, pattern: RegExp, what: string): string {
  const found = pattern.exec(text);
  if (found === null) throw new Error(`${what}: ${pattern} not found`);
  return found[1]!;
}

function serverConfig(server: string): ServerConfig {
  const text = readFileSync(join(deploy, `${server}.conf`), 'utf8');
  const cluster = match(text, /^cluster \{\n([\s\S]*?)\n\}/m, `${server} cluster block`);
  return {
    name: match(text, /^server_name: "([^"]+)"$/m, server),
    clientPort: Number(match(text, /^listen: "127\.0\.0\.1:(\d+)"$/m, server)),
    monitorPort: Number(match(text, /^http: "127\.0\.0\.1:(\d+)"$/m, server)),
    clusterName: match(cluster, /name: "([^"]+)"/, server),
    clusterPort: Number(match(cluster, /listen: "127\.0\.0\.1:(\d+)"/, server)),
    routePorts: [...match(cluster, /routes: \[([\s\S]*?)\]/, server).matchAll(/"nats-route:\/\/127\.0\.0\.1:(\d+)"/g)].map((found) => Number(found[1])),
    storeDir: match(text, /^\s+store_dir: "([^"]+)"$/m, server),
    mapping: match(text, /^(mappings = \{\n[\s\S]*?\n\})$/m, server),
  };
}

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  working_dir?: string;
  network_mode?: string;
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  environment?: Record<string, string>;
}
const compose = parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8')) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const configs = SERVERS.map(serverConfig);
const script = readFileSync(join(deploy, 'local.sh'), 'utf8');

/** Every LOYALTY_ setting name, as test/unit/ops/docs.test.ts derives them for the settings table. */
function settingNames(): Set<string> {
  const shape = (settingsSchema as unknown as { _def: { schema?: { shape: Record<string, unknown> } } })._def.schema?.shape ?? (settingsSchema as unknown as { shape: Record<string, unknown> }).shape;
  return new Set(Object.keys(shape).map(envNameOf));
}

function runScript(args: string[], env: Record<string, string>): { status: number | null; output: string } {
  const result = spawnSync('bash', [join(deploy, 'local.sh'), ...args], { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env }, encoding: 'utf8', timeout: 10_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('deploy/cluster: the 3 servers + 3 engines recipe', () => {
  it('every server config is accepted by nats-server -t', async () => {
    const binary = await findNatsServerBinary({ autoInstall: false });
    for (const server of SERVERS) {
      const output = execFileSync(binary, ['-t', '-c', join(deploy, `${server}.conf`)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5_000 });
      expect(output, server).not.toMatch(/error/i);
    }
  });

  it('the three configs form one cluster: distinct names, ports and stores, routes to all three, the same mapping', () => {
    expect(configs.map((config) => config.name)).toEqual([...SERVERS]);
    expect(configs.map((config) => config.clientPort)).toEqual([4222, 4223, 4224]);
    expect(configs.map((config) => config.clusterPort)).toEqual([6222, 6223, 6224]);
    expect(configs.map((config) => config.monitorPort)).toEqual([8222, 8223, 8224]);
    const ports = configs.flatMap((config) => [config.clientPort, config.clusterPort, config.monitorPort]);
    expect(new Set(ports).size).toBe(ports.length);
    expect(new Set(configs.map((config) => config.storeDir)).size).toBe(3);
    expect(new Set(configs.map((config) => config.clusterName)).size).toBe(1);
    for (const config of configs) expect([...config.routePorts].sort(), config.name).toEqual(configs.map((each) => each.clusterPort));
    // The mapping the cluster tests prove cluster mode works with, for the default partitions and prefix.
    const defaults = loadSettings({});
    expect(defaults.partitions).toBe(64);
    expect(defaults.subjectPrefix).toBe('loyalty');
    for (const config of configs) expect(config.mapping, config.name).toBe(PARTITION_MAPPING);
  });

  it('compose.yaml runs each server on its config, stored on a volume', () => {
    expect(Object.keys(compose.services).sort()).toEqual([...ENGINES, ...SERVERS]);
    for (const [index, server] of SERVERS.entries()) {
      const service = compose.services[server]!;
      expect(service.image, server).toMatch(/^nats:2\.10/);
      expect(service.network_mode, server).toBe('host');
      const configPath = service.command![service.command!.indexOf('-c') + 1]!;
      const mounts = (service.volumes ?? []).map((entry) => entry.split(':'));
      const configMount = mounts.find(([, target]) => target === configPath);
      expect(configMount?.[0], server).toBe(`./${server}.conf`);
      expect(existsSync(join(deploy, configMount![0]!)), server).toBe(true);
      // The config's store_dir is relative to the working directory: a named volume holds it.
      const storeMount = mounts.find(([, target]) => target === service.working_dir);
      expect(compose.volumes, server).toHaveProperty(storeMount![0]!);
      expect(configs[index]!.storeDir).toBe(`./${server}`);
      expect(service.healthcheck!.test.join(' '), server).toContain(`http://127.0.0.1:${configs[index]!.monitorPort}/healthz`);
    }
  });

  it("compose.yaml's engines: only real settings, accepted by the engine's schema, cluster mode R3 on all three servers", () => {
    const names = settingNames();
    const clientUrls = configs.map((config) => `nats://127.0.0.1:${config.clientPort}`);
    const httpPorts = new Set<number>();
    const instances = new Set<string>();
    for (const engine of ENGINES) {
      const service = compose.services[engine]!;
      expect(service.build, engine).toBe('../..');
      expect(existsSync(join(deploy, service.build!, 'Dockerfile'))).toBe(true);
      expect(service.network_mode, engine).toBe('host');
      expect(Object.keys(service.depends_on ?? {}).sort(), engine).toEqual([...SERVERS]);
      const environment = service.environment!;
      expect(Object.keys(environment).filter((name) => !names.has(name)), engine).toEqual([]);
      const settings = loadSettings(environment);
      expect(settings.cluster, engine).toBe(true);
      expect(settings.clusterReplicas, engine).toBe(3);
      expect(settings.natsUrl.split(','), engine).toEqual(clientUrls);
      expect(settings.httpHost, engine).toBe('127.0.0.1');
      // Above a JetStream leader election on a 3-node cluster (~6 s on 2.9.10, docs/cluster.md).
      expect(settings.clusterLeaseTtlMs, engine).toBeGreaterThan(6_000);
      httpPorts.add(settings.httpPort);
      instances.add(settings.instanceId!);
    }
    expect([...httpPorts]).toEqual([8081, 8082, 8083]);
    expect([...instances]).toEqual([...ENGINES]);
  });

  it('local.sh is valid bash and agrees with the configs and compose.yaml', () => {
    expect(spawnSync('bash', ['-n', join(deploy, 'local.sh')], { encoding: 'utf8' }).stderr).toBe('');
    const array = (name: string) => match(script, new RegExp(`^${name}=\\(([^)]*)\\)$`, 'm'), name).split(' ');
    expect(array('servers')).toEqual([...SERVERS]);
    expect(array('engines')).toEqual([...ENGINES]);
    expect(array('client_ports').map(Number)).toEqual(configs.map((config) => config.clientPort));
    expect(array('route_ports').map(Number)).toEqual(configs.map((config) => config.clusterPort));
    expect(array('monitor_ports').map(Number)).toEqual(configs.map((config) => config.monitorPort));
    expect(array('http_ports')).toEqual(ENGINES.map((engine) => compose.services[engine]!.environment!.LOYALTY_HTTP_PORT));
    expect(match(script, /^nats_url=(\S+)$/m, 'nats_url')).toBe(compose.services.e1!.environment!.LOYALTY_NATS_URL);
    // Every LOYALTY_ name it sets or mentions is a setting: the engines refuse an unknown one.
    const names = settingNames();
    const mentioned = [...new Set([...script.matchAll(/LOYALTY_[A-Z0-9_]+/g)].map((found) => found[0]))];
    expect(mentioned.length).toBeGreaterThan(5);
    expect(mentioned.filter((name) => !names.has(name))).toEqual([]);
  });

  it('local.sh refuses clearly without nats-server, starting nothing; status and stop of an empty directory', () => {
    const parent = mkdtempSync(join(tmpdir(), 'loyalty-recipe-'));
    try {
      const dir = join(parent, 'state');
      const missing = runScript(['start', '--dir', dir], { NATS_SERVER: join(parent, 'no-such-nats-server') });
      expect(missing.status).toBe(1);
      expect(missing.output).toContain('apt-get install -y nats-server');
      expect(existsSync(dir)).toBe(false);
      const status = runScript(['status', '--dir', dir], {});
      expect(status.status).toBe(1);
      expect(status.output).toContain('nothing started');
      expect(runScript(['stop', '--dir', dir], {}).status).toBe(0);
      expect(runScript(['restart'], {}).status).toBe(2);
      expect(readdirSync(parent)).toEqual([]);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it('operations.md: the cluster section names the recipe, real settings and real metrics', () => {
    const operations = read('docs/operations.md');
    const start = operations.indexOf('## Cluster topology (3 servers + 3 engines)');
    expect(start).toBeGreaterThan(0);
    const end = operations.indexOf('\n## ', start + 1);
    const section = operations.slice(start, end === -1 ? undefined : end);
    expect(section).toContain('deploy/cluster/local.sh');
    expect(section).toContain('deploy/cluster/compose.yaml');
    // A LOYALTY_ name in it is a setting, or a default stream or bucket name (LOYALTY_TX, LOYALTY_LEASES, ...).
    const names = settingNames();
    const resources = new Set(Object.values(loadSettings({})).filter((value) => typeof value === 'string'));
    const named = [...new Set([...section.matchAll(/`(LOYALTY_[A-Z0-9_]+)/g)].map((found) => found[1]!))];
    expect(named.filter((name) => names.has(name)).length).toBeGreaterThan(3);
    expect(named.filter((name) => !names.has(name) && !resources.has(name))).toEqual([]);
    const metricsSource = read('src/metrics/metrics.ts') + read('src/metrics/cluster-metrics.ts');
    const metrics = [...new Set([...section.matchAll(/`(loyalty_[a-z_]+)/g)].map((found) => found[1]!))];
    expect(metrics.length).toBeGreaterThan(3);
    expect(metrics.filter((name) => !metricsSource.includes(`name: '${name}'`))).toEqual([]);
  });
});
