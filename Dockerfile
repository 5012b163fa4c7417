# The engine with an embedded nats-server (Debian's package), or pointed at an
# external NATS with LOYALTY_NATS_URL.
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nats-server ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# npm install, not npm ci: optional native builds for other platforms are missing from the lock.
RUN npm install --omit=dev --no-audit --no-fund
COPY src ./src
COPY config ./config
COPY tsconfig.json ./
ENV LOYALTY_DATA_DIR=/data LOYALTY_HTTP_HOST=0.0.0.0 LOYALTY_EMBEDDED_NATS_AUTO_INSTALL=false
VOLUME /data
EXPOSE 8080 4222
STOPSIGNAL SIGTERM
CMD ["node", "--import", "tsx", "src/cli/main.ts", "start"]
