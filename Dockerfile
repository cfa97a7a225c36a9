# The Aurum image. Built by `scripts/image`, which assembles `rootfs.tar` (the binary, the
# shared libraries it links, /etc/passwd, CA certificates, GraphiQL's assets, /tmp, and /data
# owned by the user aurum) and runs `docker build` on it: FROM scratch, so nothing is pulled
# and the image holds nothing else (no shell).
FROM scratch
ARG VERSION=unknown
ARG REVISION=unknown
ARG CREATED=unknown
ADD rootfs.tar /
LABEL org.opencontainers.image.title="aurum" \
      org.opencontainers.image.description="Control plane for fleets of LLM agents (GraphQL API)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.created="$CREATED"
# Writes go to /data (the embedded SQLite database; mount a volume) and /tmp only: the image runs
# with a read-only root filesystem (`docker run --read-only`, Kubernetes'
# readOnlyRootFilesystem). On PostgreSQL nothing is written to /data.
ENV AURUM_LISTEN=0.0.0.0:8080 \
    AURUM_GRAPHIQL_ASSETS=/app/web/node_modules
WORKDIR /data
VOLUME /data
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/app/aurum", "healthcheck"]
ENTRYPOINT ["/app/aurum"]
CMD ["serve"]
