#!/usr/bin/env bash
# `make health`: Docker's health state of every container of the project, and the
# answer of each running role itself (native Ping, or GET /health for the gateway).
set -uo pipefail
cd "$(dirname "$0")/.."
. docker/lib.sh

mapfile -t ids < <(project_containers)
[[ ${#ids[@]} -gt 0 ]] || die "no containers in project $project (is it up?)"
failed=0
for id in "${ids[@]}"; do
    read -r name state health < <(docker inspect --format \
        '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}}' "$id")
    name=${name#/}
    if [[ "$state" != running ]]; then
        printf '%-28s %-9s %-10s\n' "$name" "$state" "$health"
        continue
    fi
    if answer=$(docker exec "$id" docker-entrypoint health 2>&1); then
        printf '%-28s %-9s %-10s %s\n' "$name" "$state" "$health" "$answer"
    else
        failed=1
        printf '%-28s %-9s %-10s UNHEALTHY: %s\n' "$name" "$state" "$health" "$(tail -n1 <<<"$answer")"
    fi
done
gateway_port=${GATEWAY_PORT:-8089}
if command -v curl >/dev/null; then
    printf 'gateway from the host: '
    curl -fsS --max-time 5 "http://localhost:$gateway_port/health" || failed=1
    echo
fi
exit $failed
