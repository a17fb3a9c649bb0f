# Build: docker build -t ucan-gateway .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ucan-gateway

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/ucan-gateway --create-home ucan
COPY --from=build /src/target/release/ucan-gateway /usr/local/bin/ucan-gateway
USER ucan
WORKDIR /var/lib/ucan-gateway
ENTRYPOINT ["ucan-gateway"]
CMD ["--help"]
