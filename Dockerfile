# syntax=docker/dockerfile:1
# Build: docker build -t ucan-gateway .
# Run:   docker run -p 8080:8080 -v ucan-gateway-data:/data ucan-gateway
# docs/deploy.md, "Container image", says more (keys, policy, TLS).

FROM rust:1.95-slim-trixie AS build
WORKDIR /src

# A stripped binary: no symbols in the image (backtraces still name the panic location). Set
# before the dependency layer: the profile is part of every crate's fingerprint.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols

# Dependencies first, against stub sources: this layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every change to the code.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches tests/it \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/validate.rs \
 && echo 'fn main() {}' > tests/it/main.rs \
 && cargo build --release --locked --bin ucan-gateway \
 && rm -rf src benches tests

# The code. .dockerignore keeps target/, node_modules, data directories and keys out.
COPY . .
# The stubs' outputs are older than the real sources only by mtime; touch so cargo rebuilds them.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin ucan-gateway \
 && mkdir -p /out/data \
 && cp target/release/ucan-gateway /out/ucan-gateway

# glibc, libgcc and CA certificates (for HTTPS to a Bacalhau network), no shell, no package manager.
FROM gcr.io/distroless/cc-debian13:nonroot
COPY --from=build /out/ucan-gateway /usr/local/bin/ucan-gateway
# The data directory belongs to the unprivileged user, so a fresh named volume does too.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
ENV UCAN_GATEWAY_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
# No curl in the image: the binary probes itself.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/ucan-gateway", "probe", "http://127.0.0.1:8080/livez", "--timeout", "3s"]
ENTRYPOINT ["/usr/local/bin/ucan-gateway"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
