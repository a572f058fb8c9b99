# hoiclip on the CPU: `docker build -t hoiclip .`
# The weights are not in the image (none can be shipped): mount an official checkpoint
# and name it with HOICLIP_WEIGHTS; without it the server runs the labelled demo model.
# See README "Scaling out" for compose and Kubernetes.

# --- build ---------------------------------------------------------------------------
FROM rust:1.92-bookworm AS build
# libjpeg-turbo's decoder (as Pillow decodes) and SQLite are built from bundled C with the
# image's compiler; nasm gives the JPEG decoder its SIMD (optional, same pixels).
RUN apt-get update \
 && apt-get install -y --no-install-recommends nasm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && cp target/release/hoiclip /usr/local/bin/hoiclip

# --- run -----------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/hoiclip --create-home hoiclip
COPY --from=build /usr/local/bin/hoiclip /usr/local/bin/hoiclip
USER hoiclip
WORKDIR /var/lib/hoiclip
# The SQLite default lives here (sqlite://data/hoiclip.db); replicas use Postgres instead
# (HOICLIP_DATABASE_URL=postgres://...).
VOLUME ["/var/lib/hoiclip/data"]
ENV HOICLIP_LISTEN=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080
# SIGTERM: stop accepting, finish requests in flight within --shutdown-grace, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["hoiclip"]
CMD ["serve"]
