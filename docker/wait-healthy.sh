#!/usr/bin/env bash
# Wait until every running container of the project is healthy.
#
#   docker/wait-healthy.sh [TIMEOUT_SECONDS]     (default: $WAIT_TIMEOUT or 240)
#
# Containers that were stopped on purpose (exited) are listed but not waited for;
# a container that keeps restarting or turns unhealthy fails the wait at the deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
. docker/lib.sh

timeout=${1:-${WAIT_TIMEOUT:-240}}
deadline=$((SECONDS + timeout))
started=$SECONDS
while :; do
    waiting=()
    mapfile -t ids < <(project_containers)
    [[ ${#ids[@]} -gt 0 ]] || die "no containers in project $project (is it up?)"
    while read -r name state health; do
        case "$state/$health" in
            running/healthy | exited/* | created/*) ;;
            *) waiting+=("${name#/}:$state/$health") ;;
        esac
    done < <(docker inspect --format \
        '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' "${ids[@]}")
    if [[ ${#waiting[@]} -eq 0 ]]; then
        log "all services healthy after $((SECONDS - started)) s"
        exit 0
    fi
    if ((SECONDS >= deadline)); then
        log "still not healthy after ${timeout} s: ${waiting[*]}"
        "${compose[@]}" ps >&2 || true
        exit 1
    fi
    sleep 2
done
