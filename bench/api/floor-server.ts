import Fastify from 'fastify';

/**
 * The HTTP floor of this machine for the API bench: fastify (same version and
 * options as the engine's server) answering GET /v1/members/:memberId/wallet
 * with a fixed wallet body of the same size, no auth, no store, no schema.
 * What one Node thread can serve here before the engine does any work.
 *
 *   node --import tsx bench/api/floor-server.ts <port> <bodyFile|->
 */

const [portText, bodyText] = process.argv.slice(2);
const port = Number(portText);
const body =
  bodyText !== undefined && bodyText !== '-'
    ? bodyText
    : JSON.stringify({ memberId: 'm0', status: 'active', note: 'x'.repeat(900) });
const app = Fastify({ logger: false, exposeHeadRoutes: false, routerOptions: { maxParamLength: 512 } });
app.get('/v1/members/:memberId/wallet', async (_request, reply) => reply.type('application/json; charset=utf-8').send(body));
await app.listen({ host: '127.0.0.1', port });
process.stdout.write(`${JSON.stringify({ ready: true, port })}\n`);
process.once('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
