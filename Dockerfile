# syntax=docker/dockerfile:1
# iomapd in a container: serves /data/default.img (a 1 GiB sparse raw file, created on first start;
# --raw, since serve refuses a file that is not an iomapd image without it) over NBD on port 10809.
#   docker build -t iomapd .
#   docker run -d --name iomapd -v iomapd-data:/data -p 127.0.0.1:10809:10809 iomapd
#   nbdinfo nbd://127.0.0.1:10809

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the npm `node` package's install script would fetch a second Node runtime,
# and the base image already has Node 24. No runtime dependency needs an install script.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
# The base image's unprivileged `node` user owns the data volume. util-linux (blockdev, for
# sizing block devices) is already in the base image; hole punching and locks are native calls.
RUN mkdir /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 10809
# iomapd handles SIGTERM itself (finish in-flight requests, flush, exit 0), also as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/src/cli/main.ts"]
CMD ["serve", "/data/default.img", "--raw", "--size", "1G", "--listen", "0.0.0.0:10809"]
