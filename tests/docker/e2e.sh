#!/usr/bin/env bash
# End-to-end test of the Docker deployment: `make test-docker` (run by .ci/run after `make test`).
#
# On a Debian bookworm machine like CI's, as root, it:
#   - installs docker.io and docker-compose if missing and starts dockerd if none runs
#     (and stops the dockerd it started when it is done);
#   - provides the base image locally when it is not there (debootstrap, docker import),
#     reusing it on later runs; fills wheelhouse/ on the host for an offline image build;
#   - make build-all, make up (1 MiB chunks through tests/docker/compose.e2e.yml), waits
#     for every service to be healthy;
#   - through http://localhost:8089: uploads a multi-chunk file, downloads and compares,
#     lists, deletes; then the same with the host's `hercules --gateway` command line
#     (tests/docker/gateway_checks.sh, which tests/test_dev_cluster.py runs against `hercules dev`);
#   - make scale N=5 and checks the master reports 5 live chunkservers; stops a
#     chunkserver and still reads every file;
#   - make backup, make clean-volumes, make restore, and finds every file again;
#   - make down, and checks that no container or network is left.
# Every wait is bounded; on failure the services' logs are printed.
#
# It runs as compose project "hercules-e2e" (not "hercules"), so it never touches a
# deployment of yours, but it needs the seed's host ports (9090, 8081-8083, 8089, or
# MASTER_PORT, CHUNK1_PORT.., GATEWAY_PORT) and the 172.25.0.0/16 subnet to be free.
# KEEP=1 leaves the cluster up after a failure, for a look.
set -euo pipefail
cd "$(dirname "$0")/../.."

export COMPOSE_PROJECT_NAME=${E2E_PROJECT:-hercules-e2e}
export COMPOSE_FILE=docker-compose.yml:tests/docker/compose.e2e.yml
GATEWAY=http://localhost:${GATEWAY_PORT:-8089}
MAKE=(make --no-print-directory)
T0=$SECONDS
passed=0
failed=0
started_dockerd=""
work=$(mktemp -d)
# step, ok, fail, check, http, json, same_file and the gateway and host CLI checks
. tests/docker/gateway_checks.sh

compose_cmd() {
    if command -v docker-compose >/dev/null 2>&1; then docker-compose "$@"; else docker compose "$@"; fi
}

dump_logs() {
    echo
    echo "=================== services (docker-compose ps) ==================="
    compose_cmd ps 2>&1 || true
    echo "=================== logs (last 150 lines each) ==================="
    compose_cmd logs --no-color --tail=150 2>&1 || true
    if [[ -n "$started_dockerd" && -f "$work/dockerd.log" ]]; then
        echo "=================== dockerd (last 30 lines) ==================="
        tail -n 30 "$work/dockerd.log" || true
    fi
}

finish() {
    local rc=$?
    set +e
    if [[ $rc -ne 0 ]]; then
        [[ $failed -gt 0 ]] || failed=$((failed + 1))
        echo "docker-e2e FAILED after $((SECONDS - T0)) s (exit $rc)"
        dump_logs
    fi
    if [[ $rc -ne 0 && "${KEEP:-0}" == 1 ]]; then
        echo "KEEP=1: leaving project $COMPOSE_PROJECT_NAME up"
    elif docker info >/dev/null 2>&1; then
        compose_cmd down --volumes --remove-orphans >/dev/null 2>&1
        docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
            | xargs -r docker volume rm >/dev/null 2>&1
    fi
    [[ -z "${backup_file:-}" ]] || rm -f "$backup_file"
    if [[ -n "$started_dockerd" ]]; then
        kill "$started_dockerd" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 1; done
    fi
    rm -rf "$work"
    echo
    echo "docker-e2e: $passed passed, $failed failed"
    exit $rc
}
trap finish EXIT

live_chunkservers() {
    http "$GATEWAY/api/v1/cluster" | json 'sum(1 for c in d["chunkservers"] if c["state"] == "alive")'
}
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND... : until the command succeeds
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what (not within $limit s)"
        sleep 2
    done
    ok "$what"
}
all_files_readable() {
    same_file e2e/big.bin "$work/big.bin" && same_file e2e/dir/keep.txt "$work/keep.txt" \
        && same_file e2e/after-scale.bin "$work/after-scale.bin"
}

validate_compose_file() { COMPOSE_FILE=docker-compose.yml compose_cmd config -q; }
print_cluster() {
    http "$GATEWAY/api/v1/cluster" | python3 -c 'import json, sys
for c in json.load(sys.stdin)["chunkservers"]:
    print("  %-22s %-6s %s chunks" % (c["address"], c["state"], c["chunk_count"]))'
}
test_live() { [[ "$(live_chunkservers)" == "$1" ]]; }
network_info_has_subnet() {
    local info
    info=$(timeout 30 "${MAKE[@]}" network-info) || return 1
    echo "$info"
    grep -q 172.25.0.0/16 <<<"$info"
}
master_logs_say_serving() {
    local logs
    logs=$(timeout 30 "${MAKE[@]}" logs-master FOLLOW=) || return 1
    grep -q 'master serving' <<<"$logs"
}
scaled_addresses_distinct() {
    local addresses
    addresses=$(http "$GATEWAY/api/v1/cluster" | json '"\n".join(c["address"] for c in d["chunkservers"] if c["state"] == "alive")')
    [[ $(sort -u <<<"$addresses" | wc -l) -eq 5 ]]
}
archive_complete() {
    local listing
    listing=$(tar -tzf "$1")
    local entry
    for entry in MANIFEST metadata.sqlite3 volumes/master-data/ volumes/chunk1-data/ volumes/chunk2-data/ \
            volumes/chunk3-data/ volumes/chunk-scaled-data/slot-1/ volumes/chunk-scaled-data/slot-2/ \
            volumes/gateway-data/ volumes/master-logs/; do
        grep -qx "$entry" <<<"$listing" || { echo "  missing: $entry"; return 1; }
    done
}

# --------------------------------------------------------------------------------------
step "Docker engine and docker-compose"
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [[ ${#need[@]} -gt 0 ]]; then
    echo "installing ${need[*]}"
    timeout 600 apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q "${need[@]}" >/dev/null
fi
if ! timeout 20 docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: $work/dockerd.log)"
    setsid dockerd </dev/null >"$work/dockerd.log" 2>&1 &
    started_dockerd=$!
    wait_for 90 "dockerd answers" docker info
fi
# The Makefile that started this test chose its compose command before docker-compose may have
# been installed above; the make targets called below must use the one that is here now.
if command -v docker-compose >/dev/null 2>&1; then export COMPOSE=docker-compose; else export COMPOSE="docker compose"; fi
docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'
compose_cmd version | sed -n 1p
docker info --format 'storage driver {{.Driver}}, cgroup {{.CgroupVersion}}'

# Nothing of an earlier run of this test, nor another deployment on our subnet or ports.
compose_cmd down --volumes --remove-orphans >/dev/null 2>&1 || true
for net in $(docker network ls -q); do
    subnets=$(docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "$net" 2>/dev/null || true)
    if grep -qw 172.25.0.0/16 <<<"$subnets"; then
        fail "a Docker network already uses 172.25.0.0/16 ($(docker network inspect --format '{{.Name}}' "$net")): stop that deployment (make down) first"
    fi
done

ports=("${MASTER_PORT:-9090}" "${CHUNK1_PORT:-8081}" "${CHUNK2_PORT:-8082}" "${CHUNK3_PORT:-8083}" "${GATEWAY_PORT:-8089}")
for port in "${ports[@]}"; do
    if ! python3 -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", int(sys.argv[1]))); s.close()' "$port" 2>/dev/null; then
        fail "host port $port is in use ($(ss -ltnpH "sport = :$port" 2>/dev/null | sed -n 1p)): free it, or set MASTER_PORT, CHUNK1_PORT..CHUNK3_PORT, GATEWAY_PORT"
    fi
done
ok "host ports ${ports[*]} are free"

step "docker-compose.yml is valid"
check "docker-compose config -q (docker-compose.yml)" validate_compose_file
check "docker-compose config -q (with the test override)" compose_cmd config -q
check "compose file keeps the seed's 30 s health checks" grep -q 'interval: 30s' docker-compose.yml

step "base image (built locally when no registry is reachable)"
base=$(sed -nE 's/^ARG BASE_IMAGE=(.*)$/\1/p' Dockerfile)
timeout 1200 docker/build-base-image.sh "$base"
check "base image $base is present" docker image inspect --format "{{.Id}}" "$base"

step "wheelhouse/ for the offline install"
timeout 900 docker/build-wheelhouse.sh python3
check "wheelhouse holds the project and its plugins" \
    bash -c 'ls wheelhouse/hercules-*.whl wheelhouse/hercules_store_fs-*.whl wheelhouse/hercules_store_zstd-*.whl wheelhouse/hercules_transport_tcp-*.whl'

step "make build-all"
t=$SECONDS
timeout 1800 "${MAKE[@]}" build-all >"$work/build.log" 2>&1 || { tail -n 60 "$work/build.log"; fail "make build-all"; }
ok "make build-all ($((SECONDS - t)) s)"
check "the image installed offline from wheelhouse/" \
    test "$(docker run --rm --entrypoint cat hercules-master:latest /opt/hercules/INSTALLED_FROM)" = wheelhouse
for image in hercules-master hercules-chunkserver hercules-gateway; do
    size=$(docker image inspect --format '{{.Size}}' "$image:latest")
    printf '  %-22s %d MB\n' "$image" $((size / 1000000))
done
check "images default to their role" bash -c \
    '[[ $(docker image inspect --format "{{range .Config.Env}}{{println .}}{{end}}" hercules-chunkserver:latest | grep ^SERVER_TYPE=) == SERVER_TYPE=chunk_server ]]'
check "the image runs as a non-root user" bash -c \
    '[[ $(docker run --rm --entrypoint id hercules-master:latest -u) =~ ^[1-9][0-9]*$ ]]'
check "no compiler in the image" test "$(docker run --rm --entrypoint sh hercules-master:latest -c \
    'for c in gcc cc c++ clang; do command -v $c && exit 0; done; echo none')" = none
check "the image has a HEALTHCHECK" bash -c \
    '[[ -n $(docker image inspect --format "{{.Config.Healthcheck.Test}}" hercules-gateway:latest) ]]'

step "make up (waits until every service is healthy)"
t=$SECONDS
timeout 600 "${MAKE[@]}" up
up_seconds=$((SECONDS - t))
ok "make up: every service healthy after $up_seconds s"
health=$(http "$GATEWAY/health")
echo "  $health"
check "gateway /health: ok, 3 chunkservers alive" \
    test "$(json 'd["status"] == "ok" and d["chunkservers_alive"] == 3' <<<"$health")" = True
check "make health" timeout 120 "${MAKE[@]}" health
check "make ping-master" timeout 60 "${MAKE[@]}" ping-master
check "make ping-chunks" timeout 60 "${MAKE[@]}" ping-chunks
check "make network-info shows 172.25.0.0/16" network_info_has_subnet
check "make status" timeout 30 "${MAKE[@]}" status
check "make logs-master (FOLLOW=) shows the master serving" master_logs_say_serving
check "the master also logs to its log volume" compose_cmd exec -T master grep -q 'master serving' /var/log/hercules/master.log

check "the image serves the dashboard (package data) at /ui" bash -c "curl -fsS --max-time 30 '$GATEWAY/ui/static/app.js' | grep showCluster >/dev/null"
check "and the API description at /api/v1/openapi.json" bash -c "curl -fsS --max-time 30 '$GATEWAY/api/v1/openapi.json' | grep '\"openapi\": \"3.1' >/dev/null"

gateway_file_checks

[[ -x .venv/bin/hercules ]] || timeout 900 "${MAKE[@]}" venv
host_cli_checks

step "make scale N=5"
timeout 600 "${MAKE[@]}" scale N=5
wait_for 90 "the master reports 5 live chunkservers" test_live 5
print_cluster
check "scaled replicas advertise distinct addresses" scaled_addresses_distinct
head -c $((4 << 20)) /dev/urandom >"$work/after-scale.bin"
check "PUT a 4 MiB file on 5 chunkservers" http -o /dev/null -X PUT --data-binary @"$work/after-scale.bin" "$GATEWAY/api/v1/files/e2e/after-scale.bin"
check "every file reads back" all_files_readable

step "one chunkserver stops"
compose_cmd stop chunkserver2
wait_for 90 "the master sees 4 live chunkservers" test_live 4
check "every file still reads back" all_files_readable

step "make backup"
timeout 600 "${MAKE[@]}" backup | tee "$work/backup.out"
backup_file=$(tail -n1 "$work/backup.out")
check "a timestamped archive in backups/" bash -c "[[ '$backup_file' =~ /backups/hercules-[0-9]{8}-[0-9]{6}\.tar\.gz$ && -s '$backup_file' ]]"
check "it holds the metadata copy and every volume" archive_complete "$backup_file"

step "make clean-volumes (all data gone)"
timeout 300 "${MAKE[@]}" clean-volumes
check "no volume of the project is left" test -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")"
check "no container of the project is left" test -z "$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")"

step "make restore BACKUP=$(basename "$backup_file")"
t=$SECONDS
timeout 900 "${MAKE[@]}" restore BACKUP="$(basename "$backup_file")"
ok "make restore: healthy again after $((SECONDS - t)) s"
wait_for 90 "the master reports 5 live chunkservers again (3 named + 2 restored slots)" test_live 5
check "every file reads back after the restore" all_files_readable
check "the deleted file stays deleted" test "$(status_of "$GATEWAY/api/v1/files/e2e/small.txt")" = 404

step "make down"
timeout 300 "${MAKE[@]}" down
check "no container is left" test -z "$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")"
check "no network is left" test -z "$(docker network ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")"
check "hercules-net is gone" bash -c "! docker network inspect ${COMPOSE_PROJECT_NAME}_hercules-net >/dev/null 2>&1"

echo
echo "make up -> healthy: $up_seconds s; whole test: $((SECONDS - T0)) s"
