import { jetstreamManager } from '@nats-io/jetstream';
import { findFreePort } from '../../src/transport/nats-server.js';
import { connectTest, startTestNatsServer, type TestNatsServer } from './nats-server.js';

const JETSTREAM_READY_TIMEOUT_MS = 30_000;

/** Until the cluster has elected its JetStream meta leader: account info answers. */
async function waitForJetStream(urls: string): Promise<void> {
  const nc = await connectTest(urls);
  try {
    const deadline = Date.now() + JETSTREAM_READY_TIMEOUT_MS;
    for (;;) {
      try {
        await jetstreamManager(nc, { timeout: 2_000 });
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`the JetStream cluster did not become ready in ${JETSTREAM_READY_TIMEOUT_MS} ms: ${String(error)}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  } finally {
    await nc.close();
  }
}

/**
 * A JetStream cluster of nats-servers on loopback for scale-out tests: each
 * with its own client, cluster and monitoring ports and store directory,
 * routes to every other. Streams and KV buckets made with replicas 3 survive
 * one server's death (issue 17).
 */
export interface TestNatsCluster {
  readonly servers: TestNatsServer[];
  /** Every client URL, comma separated: what an engine or a test client is given. */
  readonly urls: string;
  stop(): Promise<void>;
}

/** Tries with fresh ports this many times: a free port found now can be taken by another test's process before nats-server binds it. */
const PORT_ATTEMPTS = 3;

export async function startTestNatsCluster(size = 3, name = 'loyalty-test', extraConfig = ''): Promise<TestNatsCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnFreePorts(size, name, extraConfig);
    } catch (error) {
      if (attempt >= PORT_ATTEMPTS || (error as { code?: string }).code !== 'ERR_NATS_PORT_IN_USE') throw error;
    }
  }
}

async function startOnFreePorts(size: number, name: string, extraConfig: string): Promise<TestNatsCluster> {
  const clusterPorts: number[] = [];
  const clientPorts: number[] = [];
  for (let index = 0; index < size; index++) {
    clusterPorts.push(await findFreePort());
    clientPorts.push(await findFreePort());
  }
  const routes = clusterPorts.map((port) => `"nats-route://127.0.0.1:${port}"`).join(', ');
  // Started together: a JetStream cluster elects its meta leader once a quorum of routes is up.
  const started = await Promise.allSettled(
    clusterPorts.map((clusterPort, index) =>
      startTestNatsServer({
        port: clientPorts[index]!,
        extraConfig: `server_name: "n${index + 1}"\ncluster {\n  name: "${name}"\n  listen: "127.0.0.1:${clusterPort}"\n  routes: [${routes}]\n}\n${extraConfig}`,
      }),
    ),
  );
  const servers = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const refused = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (refused !== undefined) {
    // One server could not start: the others would wait for a quorum that never comes.
    await Promise.all(servers.map((server) => server.stop()));
    throw refused.reason;
  }
  await waitForJetStream(servers.map((server) => server.url).join(','));
  return {
    servers,
    urls: servers.map((server) => server.url).join(','),
    stop: async () => {
      await Promise.all(servers.map((server) => server.stop()));
    },
  };
}
