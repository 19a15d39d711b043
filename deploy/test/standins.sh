#!/usr/bin/env bash
# Stand-ins for the images deploy/compose.yaml names (python, redis, nginx, prometheus), for
# machines that reach the Debian registry but no image registry. One Debian bookworm minbase
# with the Debian packages of each, made by debootstrap and `docker import`ed once
# (cascade-standin/base), then one tag per role that only sets its entrypoint and command
# (deploy/test/standins/*.Dockerfile). Never used by what users run: the compose file and
# the Dockerfile default to the official images, and the test selects these through
# PYTHON_IMAGE, REDIS_IMAGE, NGINX_IMAGE and PROMETHEUS_IMAGE.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
say() { printf 'deploy-test stand-ins: %s\n' "$*"; }

if ! docker image inspect cascade-standin/base >/dev/null 2>&1; then
    root="$(mktemp -d /var/tmp/cascade-standin.XXXXXX)"
    trap 'rm -rf "$root"' EXIT
    say "debootstrap bookworm minbase (python3, redis-server, nginx, prometheus) from $mirror"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python-is-python3,libgomp1,ca-certificates,redis-server,nginx-light,prometheus \
        bookworm "$root" "$mirror" >/dev/null
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale \
        "$root"/etc/nginx/sites-enabled/default
    mkdir -p "$root"/data "$root"/prometheus
    chmod 0755 "$root"   # mktemp made it 0700: the image's / must be readable by its users
    say "docker import cascade-standin/base"
    tar -C "$root" -c . | docker import - cascade-standin/base >/dev/null
fi
for role in python redis nginx prometheus; do
    docker image inspect "cascade-standin/$role" >/dev/null 2>&1 && continue
    say "cascade-standin/$role"
    docker build -q -t "cascade-standin/$role" -f "$here/standins/$role.Dockerfile" "$here/standins" >/dev/null 2>&1
done
