# syntax=docker/dockerfile:1
# NOTE: image builds could not be tested on the development machines (no image registry
# reachable); verify with `docker build -t aurum .` before relying on this file.

# --- 1: the aurum binary ---------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The target dir is a cache mount, so the binary is copied out within the same step.
# `--release` is the full profile (fat LTO, one codegen unit); `scripts/serve` uses the dev one.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin aurum \
    && cp target/release/aurum /aurum

# --- 2: GraphiQL assets (npm) ----------------------------------------------------------------
FROM node:20-bookworm-slim AS web
WORKDIR /app/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --omit=dev

# --- 3: runtime ------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 aurum \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app aurum
WORKDIR /app
COPY --from=build /aurum /app/aurum
COPY --from=web /app/web/node_modules /app/web/node_modules
ENV AURUM_LISTEN=0.0.0.0:8080 \
    AURUM_GRAPHIQL_ASSETS=/app/web/node_modules
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/app/aurum"]
CMD ["serve"]
