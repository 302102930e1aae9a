# syntax=docker/dockerfile:1
# Build: a static binary, pure Go (no cgo), with goolm end-to-end encryption.
# Modules are fetched by the build itself (only those the binary imports:
# the test-only ones, such as Nomad's jobspec parser, stay out), cached
# across builds.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -tags goolm -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/vigie ./cmd/vigie

# Run: the binary, PostgreSQL's client tools, CA certificates, the time
# zones, and an unprivileged user.
#
# Backups run pg_dump, pg_dumpall, pg_restore (and psql) as children: they
# need a major version at least the cluster's (PostgreSQL 15 under Stolon)
# and no newer than the archive format Vigie reads (1.16, PostgreSQL 17), so
# 17, with their shared libraries (libpq, OpenSSL, lz4, zstd, readline).
# Alpine 3.22 ships them in main (security-supported until May 2027); PATH
# puts them first, so pg_dump_path = "pg_dump" finds them. tzdata: CRON_TZ=
# schedules name zones. ca-certificates-bundle: the TLS roots of Go and
# libpq (sslrootcert=system).
FROM alpine:3.22
RUN apk add --no-cache ca-certificates-bundle tzdata postgresql17-client \
 && addgroup -S -g 65532 vigie \
 && adduser -S -D -H -h /var/lib/vigie -s /sbin/nologin -G vigie -u 65532 vigie \
 && install -d -o 65532 -g 65532 -m 0700 /var/lib/vigie \
 && install -d -m 0755 /etc/vigie
ENV PATH=/usr/libexec/postgresql17:$PATH
COPY --from=build /out/vigie /vigie
USER 65532:65532
VOLUME /var/lib/vigie
EXPOSE 9464
ENTRYPOINT ["/vigie"]
# Mount the configuration at /etc/vigie/config.toml, with data_dir = "/var/lib/vigie"
# and http.listen = "0.0.0.0:9464"; pass secrets as environment variables or files.
# On Nomad, deploy/vigie.nomad.hcl renders both and passes its own --config.
CMD ["run", "--config", "/etc/vigie/config.toml"]
