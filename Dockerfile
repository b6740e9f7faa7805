# syntax=docker/dockerfile:1
#
# Images of the Portcullis binaries, built from the workspace root (BuildKit):
#
#   docker build --target gateway      -t portcullis-gateway .
#   docker build --target issuer       -t portcullis-issuer .
#   docker build --target expenses-mcp -t portcullis-expenses-mcp .   # the example MCP server
#
# Runtime images are distroless (glibc and libgcc, no shell, no package manager) and run as
# UID/GID 65532 ("nonroot"). The build image is Debian bookworm, like distroless' debian12, so
# the binaries link against the same glibc.

ARG RUST_VERSION=1.95
# The base images. The defaults are the published ones; scripts/build-images.sh passes
# bookworm images made locally (debootstrap) for a machine that reaches no container registry.
# A replacement build image needs cargo and rustc on PATH, gcc, make and apt; a runtime one,
# glibc, libgcc and the nonroot user (65532) with its home /home/nonroot.
ARG BUILD_IMAGE=rust:${RUST_VERSION}-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---- build --------------------------------------------------------------------------------
FROM ${BUILD_IMAGE} AS build
# Pingora builds zlib-ng with cmake; gcc and make are in the rust image already. (cmake is
# bookworm's, so its version is fixed by the base image.)
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_TERM_COLOR=never
WORKDIR /src
# The whole workspace (every member's manifest is needed), less what .dockerignore leaves out.
COPY . .

# One stage per binary, so that a --target compiles only what its image holds. The cargo
# registry and target directory are cache mounts; the binary is copied out to /out.
FROM build AS build-gateway
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p portcullis-gateway --bin portcullis-gateway \
 && install -D -m 0755 target/release/portcullis-gateway /out/portcullis-gateway

FROM build AS build-issuer
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p portcullis-issuer --bin portcullis-issuer \
 && install -D -m 0755 target/release/portcullis-issuer /out/portcullis-issuer

FROM build AS build-expenses-mcp
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p portcullis-examples --bin expenses-mcp \
 && install -D -m 0755 target/release/expenses-mcp /out/expenses-mcp

# ---- runtime ------------------------------------------------------------------------------
# The example MCP server (examples/k8s-sidecar). Pass --listen 127.0.0.1:PORT and its token
# options; see `expenses-mcp --help`.
FROM ${RUNTIME_IMAGE} AS expenses-mcp
LABEL org.opencontainers.image.title="portcullis-expenses-mcp" \
      org.opencontainers.image.description="Example expenses MCP server for Portcullis" \
      org.opencontainers.image.source="https://github.com/portcullis-dev/portcullis" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build-expenses-mcp /out/expenses-mcp /usr/local/bin/expenses-mcp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/expenses-mcp"]

# The issuer. `serve` listens on 0.0.0.0:9000 here; without PORTCULLIS_DATA_DIR its data
# directory is /home/nonroot/portcullis-data (writable by nonroot; the chart mounts an emptyDir
# at /var/lib/portcullis instead). Set PORTCULLIS_DATABASE_URL and
# PORTCULLIS_KEY_ENCRYPTION_SECRET(_FILE) for anything but a try-out.
FROM ${RUNTIME_IMAGE} AS issuer
LABEL org.opencontainers.image.title="portcullis-issuer" \
      org.opencontainers.image.description="Portcullis issuer: RFC 8693 delegation tokens for AI agents" \
      org.opencontainers.image.source="https://github.com/portcullis-dev/portcullis" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build-issuer /out/portcullis-issuer /usr/local/bin/portcullis-issuer
ENV PORTCULLIS_ISSUER_LISTEN=0.0.0.0:9000
WORKDIR /home/nonroot
USER 65532:65532
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/portcullis-issuer"]
CMD ["serve"]

# The gateway (the default target, being last). Mount its configuration at
# /etc/portcullis/gateway/gateway.yaml, or pass `run --config PATH`.
FROM ${RUNTIME_IMAGE} AS gateway
LABEL org.opencontainers.image.title="portcullis-gateway" \
      org.opencontainers.image.description="Portcullis gateway: authorizes every MCP tool call an AI agent makes" \
      org.opencontainers.image.source="https://github.com/portcullis-dev/portcullis" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build-gateway /out/portcullis-gateway /usr/local/bin/portcullis-gateway
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/portcullis-gateway"]
CMD ["run", "--config", "/etc/portcullis/gateway/gateway.yaml"]
