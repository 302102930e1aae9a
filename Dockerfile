# syntax=docker/dockerfile:1
# Build: a static binary, pure Go (no cgo), with goolm end-to-end encryption.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -tags goolm -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/vigie ./cmd/vigie \
 && mkdir -p /out/var/lib/vigie /out/etc/vigie

# Run: nothing but the binary, CA certificates and an unprivileged user.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=65532:65532 /out/var/lib/vigie /var/lib/vigie
COPY --from=build /out/etc/vigie /etc/vigie
COPY --from=build /out/vigie /vigie
USER 65532:65532
VOLUME /var/lib/vigie
EXPOSE 9464
ENTRYPOINT ["/vigie"]
# Mount the configuration at /etc/vigie/config.toml, with data_dir = "/var/lib/vigie"
# and http.listen = "0.0.0.0:9464"; pass secrets as environment variables or files.
CMD ["run", "--config", "/etc/vigie/config.toml"]
