# The engine, built: TypeScript compiled to dist/ in a build stage, run with
# plain node as a non-root user. It uses an embedded nats-server (Debian's
# package, bound to 127.0.0.1 only) or, as in compose.yaml, an external NATS
# given by LOYALTY_NATS_URL.
FROM node:20-bookworm-slim AS build
# The toolchain builds lmdb-js's addon with the free-list fix (scripts/lmdb-native.mjs,
# docs/operations.md "Crash recovery"); the runtime stage copies the built addon.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the prepare script builds dist/, which needs the sources copied below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY scripts/lmdb-native.mjs ./scripts/
RUN node scripts/lmdb-native.mjs && node scripts/lmdb-native.mjs --check
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nats-server ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/node_modules/lmdb/build ./node_modules/lmdb/build
COPY config/programs ./config/programs
RUN mkdir -p /data && chown node:node /data
ENV NODE_ENV=production LOYALTY_DATA_DIR=/data LOYALTY_HTTP_HOST=0.0.0.0 LOYALTY_EMBEDDED_NATS_AUTO_INSTALL=false
VOLUME /data
USER node
# Only the HTTP API listens beyond the container; the embedded nats-server binds 127.0.0.1.
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.LOYALTY_HTTP_PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/cli/main.js", "start"]
