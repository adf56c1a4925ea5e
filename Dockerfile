# hearth: multi-stage build, slim non-root runtime.
#   docker build -t hearth .
#   docker run -e TELEGRAM_BOT_TOKEN=… -e OPENAI_API_KEY=… -v hearth-data:/app/data hearth
# Several replicas on one Postgres behind Caddy: deploy/compose.yaml.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY migrations migrations
COPY src src
COPY benches benches
COPY config config
COPY prompts prompts
# the admin pages' templates are embedded at build time (include_dir!)
COPY templates templates
RUN cargo build --release --locked --bin hearth

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin hearth
WORKDIR /app
COPY --from=build /src/target/release/hearth /usr/local/bin/hearth
COPY config config
# read at run time from the working directory (/app/prompts)
COPY prompts prompts
COPY THIRD_PARTY_NOTICES.md ./
RUN mkdir -p /app/data && chown hearth:hearth /app/data
USER hearth
# SQLite database (database.url defaults to sqlite://data/hearth.db, relative to /app)
VOLUME ["/app/data"]
# /healthz, /readyz, the Telegram webhook and routine api triggers (when http.enabled)
ENV HEARTH_HTTP__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["hearth"]
CMD ["run"]
