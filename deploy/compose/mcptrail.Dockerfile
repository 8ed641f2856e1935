# syntax=docker/dockerfile:1
# The mcptrail CLI for the compose stack: `mcptrail approvals` and `mcptrail collect`.
# Build context: the repository root (docker-compose.yml builds it). What goes into the context
# is listed in mcptrail.Dockerfile.dockerignore next to this file; BuildKit reads it instead of
# the root .dockerignore, which admits only the module for the root Dockerfile.
#   docker build -f deploy/compose/mcptrail.Dockerfile -t mcptrail-cli:dev .

# The toolchain rust-toolchain.toml pins (tests/deploy.rs keeps the two in step), on the same
# Debian release as the runtime stage so the binary finds the glibc it was linked against.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# rust-toolchain.toml stays out: it also names the wasm targets, which rustup would download
# for nothing; this image's toolchain is the pinned one. All members are copied because cargo
# loads the whole workspace, even to build one package.
COPY Cargo.toml Cargo.lock ./
COPY filter filter
COPY cli cli
COPY integration integration
RUN cargo build --release --locked -p mcptrail-cli \
    && install -m 0755 target/release/mcptrail /usr/local/bin/mcptrail

FROM debian:bookworm-slim
# ca-certificates: a real issuer, webhook or collector is reached over TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so docker-compose.yml can hand the state volumes to it.
RUN groupadd --system --gid 10002 mcptrail \
    && useradd --system --uid 10002 --gid 10002 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mcptrail
COPY --from=build /usr/local/bin/mcptrail /usr/local/bin/mcptrail
USER 10002:10002
ENTRYPOINT ["mcptrail"]
CMD ["--help"]
