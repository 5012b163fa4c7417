import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadApiTokens } from '../../../src/api/auth.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const read = (path: string) => readFileSync(root + path, 'utf8');

interface Service {
  image?: string;
  build?: string | { context: string; dockerfile?: string };
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
}
const compose = parse(read('compose.yaml')) as { services: Record<string, Service>; volumes: Record<string, unknown> };

/** A volume entry's source and target; a bind mount's source starts with '.' or '/'. */
function mount(entry: string): { source: string; target: string; bind: boolean } {
  const [source, target] = entry.split(':') as [string, string];
  return { source, target, bind: source.startsWith('.') || source.startsWith('/') };
}
const mountOf = (service: string, target: string) => compose.services[service]!.volumes!.map(mount).find((m) => m.target === target);

describe('compose.yaml', () => {
  it('has nats, the engine, Prometheus and Grafana', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['engine', 'grafana', 'nats', 'prometheus']);
  });

  it('bind-mounts only files that exist, and declares every named volume', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const entry of service.volumes ?? []) {
        const { source, bind } = mount(entry);
        if (bind) expect(existsSync(root + source), `${name}: ${source}`).toBe(true);
        else expect(compose.volumes, `${name}: ${source}`).toHaveProperty(source);
      }
      for (const port of service.ports ?? []) expect(port, `${name} publishes on loopback only`).toMatch(/^127\.0\.0\.1:/);
    }
  });

  it('runs nats-server with JetStream stored on a volume', () => {
    const nats = compose.services.nats!;
    expect(nats.command).toContain('--jetstream');
    const storeDir = nats.command![nats.command!.indexOf('--store_dir') + 1]!;
    expect(mountOf('nats', storeDir)?.bind).toBe(false);
  });

  it('points the engine at that nats-server, with the API tokens file it mounts', () => {
    const engine = compose.services.engine!;
    expect(engine.build).toBe('.');
    expect(existsSync(root + 'Dockerfile')).toBe(true);
    expect(engine.environment!.LOYALTY_NATS_URL).toBe('nats://nats:4222');
    const tokensFile = mountOf('engine', engine.environment!.LOYALTY_API_TOKENS_FILE!);
    expect(tokensFile?.bind).toBe(true);
    const tokens = loadApiTokens({ apiTokens: '', apiTokensFile: root + tokensFile!.source });
    // Prometheus's token is a read token of that file.
    const metricsToken = read('config/compose/metrics-token').trim();
    expect(tokens.identify(metricsToken)?.role).toBe('read');
  });

  it('gives Prometheus its config, the rules it loads and the engine as target', () => {
    const config = parse(read('config/prometheus/prometheus.yml')) as {
      rule_files: string[];
      scrape_configs: { static_configs: { targets: string[] }[]; authorization: { credentials_file: string } }[];
    };
    expect(mountOf('prometheus', '/etc/prometheus/prometheus.yml')?.source).toBe('./config/prometheus/prometheus.yml');
    for (const file of config.rule_files) expect(mountOf('prometheus', file)?.source).toBe('./config/prometheus/rules.yml');
    const scrape = config.scrape_configs[0]!;
    expect(scrape.static_configs[0]!.targets).toEqual(['engine:8080']);
    expect(mountOf('prometheus', scrape.authorization.credentials_file)?.source).toBe('./config/compose/metrics-token');
  });

  it('provisions Grafana with the datasource and the dashboard directory', () => {
    expect(mountOf('grafana', '/etc/grafana/provisioning')?.source).toBe('./config/grafana/provisioning');
    const provider = parse(read('config/grafana/provisioning/dashboards/loyalty.yaml')) as { providers: { options: { path: string } }[] };
    const dashboards = mountOf('grafana', provider.providers[0]!.options.path);
    expect(dashboards?.source).toBe('./config/grafana/dashboards');
    expect(existsSync(root + 'config/grafana/dashboards/loyalty-engine.json')).toBe(true);
    const datasources = parse(read('config/grafana/provisioning/datasources/prometheus.yaml')) as { datasources: { url: string }[] };
    expect(datasources.datasources[0]!.url).toBe('http://prometheus:9090');
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const finalStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const instructions = finalStage.split('\n').filter((line) => /^[A-Z]+\s/.test(line));

  it('runs the built dist as a non-root user', () => {
    expect(dockerfile).toMatch(/RUN npm run build/);
    expect(finalStage).toMatch(/COPY --from=build \/app\/dist\/src \.\/dist\/src/);
    expect(instructions.find((line) => line.startsWith('CMD '))).toBe('CMD ["node", "dist/src/cli/main.js", "start"]');
    expect(finalStage).not.toMatch(/tsx/);
    const user = instructions.filter((line) => line.startsWith('USER ')).at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/root|\b0\b/);
  });

  it('has a health check on /health and exposes only the HTTP port', () => {
    expect(finalStage).toMatch(/HEALTHCHECK [^\n]*\\\n\s*CMD [^\n]*\/health/);
    const exposed = instructions.filter((line) => line.startsWith('EXPOSE ')).flatMap((line) => line.split(/\s+/).slice(1));
    expect(exposed).toEqual(['8080']);
  });

  it('the program file the engine defaults to is in the image', () => {
    expect(finalStage).toMatch(/COPY config\/programs \.\/config\/programs/);
    expect(existsSync(root + 'config/programs/retail.yaml')).toBe(true);
  });
});
