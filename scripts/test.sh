#!/usr/bin/env bash
# The whole test suite. On a fresh Debian machine it first installs what the
# tests need: from apt a C toolchain (for -race and for Dendrite's SQLite),
# slapd, PostgreSQL and zstd; with `go install` into a cache directory
# Dendrite v0.13.8, the real Matrix homeserver the integration tests start
# on loopback, and versitygw v1.8.0, the S3 server the backup tests use.
# Integration tests then must run: VIGIE_INTEGRATION=require makes them fail,
# not skip, when a server cannot be started.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

command -v go >/dev/null || { echo "Go 1.26 is required: https://go.dev/dl/" >&2; exit 1; }

need_apt=()
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)
command -v git >/dev/null || need_apt+=(git)
# The LDAP tests start their own slapd, with their own config on a free
# loopback port, and load data with ldapmodify.
[ -x /usr/sbin/slapd ] || need_apt+=(slapd)
command -v ldapmodify >/dev/null || need_apt+=(ldap-utils)
# The backup tests start their own PostgreSQL clusters (initdb, postgres)
# and dump them with the client tools (pg_dump, pg_restore, psql, pgbench).
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
   ! compgen -G '/usr/lib/postgresql/*/bin/pg_dump' >/dev/null; then
  need_apt+=(postgresql)
fi
# A backup benchmark compares against the zstd command.
command -v zstd >/dev/null || need_apt+=(zstd)
if ((${#need_apt[@]})); then
  say "Installing ${need_apt[*]} with apt-get"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  if [[ " ${need_apt[*]} " == *" slapd "* ]]; then
    # Only the binary is wanted: no system directory, so no system server
    # is configured or started.
    echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
  fi
  if [[ " ${need_apt[*]} " == *" postgresql "* ]]; then
    # Only the binaries are wanted: installing a server package would
    # create and start a "main" cluster unless createcluster.conf says not
    # to. That file is a conffile of postgresql-common, so it is edited
    # once that package is installed (writing it beforehand makes dpkg ask
    # about a conflicting conffile).
    conf=/etc/postgresql-common/createcluster.conf
    [ -f "$conf" ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-common
    if grep -Eq '^[#[:space:]]*create_main_cluster' "$conf"; then
      $SUDO sed -Ei 's/^[#[:space:]]*create_main_cluster.*/create_main_cluster = false/' "$conf"
    else
      echo "create_main_cluster = false" | $SUDO tee -a "$conf" >/dev/null
    fi
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

export VIGIE_TOOLS_DIR="${VIGIE_TOOLS_DIR:-$HOME/.cache/vigie-tools/bin}"
mkdir -p "$VIGIE_TOOLS_DIR"
if [ ! -x "$VIGIE_TOOLS_DIR/dendrite" ] || [ ! -x "$VIGIE_TOOLS_DIR/generate-keys" ]; then
  say "Installing Dendrite v0.13.8 into $VIGIE_TOOLS_DIR"
  GOBIN="$VIGIE_TOOLS_DIR" CGO_ENABLED=1 go install \
    github.com/matrix-org/dendrite/cmd/dendrite@v0.13.8 \
    github.com/matrix-org/dendrite/cmd/generate-keys@v0.13.8
fi
# The harness checks the version in the binary's build info (`versitygw
# --version` says "git" when built by go install).
if [ "$(go version -m "$VIGIE_TOOLS_DIR/versitygw" 2>/dev/null | awk '$1 == "mod" { print $3 }')" != v1.8.0 ]; then
  say "Installing versitygw v1.8.0 into $VIGIE_TOOLS_DIR"
  GOBIN="$VIGIE_TOOLS_DIR" CGO_ENABLED=0 go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi

say "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed on:"; echo "$unformatted"; exit 1; fi

say "go vet"
CGO_ENABLED=0 go vet -tags goolm ./...

say "static build (CGO_ENABLED=0, -tags goolm)"
CGO_ENABLED=0 go build -tags goolm -o /dev/null ./cmd/vigie

say "go test -race (integration tests required)"
start=$(date +%s)
VIGIE_INTEGRATION=require CGO_ENABLED=1 go test -race -tags goolm -count=1 -timeout 30m ./...
say "test suite took $(( $(date +%s) - start ))s"
