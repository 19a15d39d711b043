#!/usr/bin/env bash
# `make deploy-test`: build the image, bring up the compose stack (two replicas behind nginx,
# Redis, the response cache's Redis, Prometheus; Grafana and vLLM left out), drive it through
# the ports it publishes on 127.0.0.1 (deploy/test/smoke.py), and tear it down (`down -v`)
# whatever happened. Images a registry would give come from stand-ins (setup.sh).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
started=$(date +%s)
say() { printf '\ndeploy-test: %s\n' "$*"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

bash deploy/test/setup.sh
[ -n "$(ls wheelhouse/*.whl 2>/dev/null)" ] || make wheelhouse

work="$repo/var/deploy-test"
rm -rf "$work" && mkdir -p "$work/policies"
.venv/bin/python deploy/test/make_policy.py policies/default.yaml "$work/policies/deploy-test.yaml"
export DEPLOY_TEST_POLICIES="$work/policies"
export COMPOSE_PROJECT_NAME=cascade-deploy-test
export PYTHON_IMAGE=cascade-standin/python REDIS_IMAGE=cascade-standin/redis \
    NGINX_IMAGE=cascade-standin/nginx PROMETHEUS_IMAGE=cascade-standin/prometheus
export CASCADE_IMAGE=cascade:deploy-test CASCADE_PUBLISH_ADDRESS=127.0.0.1
CASCADE_PORT=$(free_port); PROMETHEUS_PORT=$(free_port)
export CASCADE_PORT PROMETHEUS_PORT
compose=(docker compose -f deploy/compose.yaml -f deploy/test/compose.test.yaml)
services=(cascade proxy redis redis-cache prometheus upstream)

teardown() {
    status=$?
    if [ $status -ne 0 ]; then
        say "failed; the stack's last logs:"
        "${compose[@]}" logs --tail 30 cascade proxy 2>&1 | tail -60 || true
    fi
    "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    say "$( [ $status -eq 0 ] && echo passed || echo FAILED ) in $(( $(date +%s) - started )) s"
    exit $status
}
trap teardown EXIT

say "building the image (PYTHON_IMAGE=$PYTHON_IMAGE, from wheelhouse/)"
"${compose[@]}" build cascade 2>&1 | tail -3
say "starting ${services[*]}"
"${compose[@]}" up -d --wait --wait-timeout 300 "${services[@]}" \
    || { say "a service did not become healthy"; "${compose[@]}" ps -a; exit 1; }
.venv/bin/python deploy/test/smoke.py \
    --url "http://127.0.0.1:$CASCADE_PORT" --prometheus "http://127.0.0.1:$PROMETHEUS_PORT" \
    --compose "${compose[*]}"
