#!/usr/bin/env bash
# The end-to-end checks of a running cluster, through its gateway: files through the REST API
# (a multi-chunk upload read back identical, list, delete), then the host's command line.
#
# tests/docker/e2e.sh sources this file and runs them against the Docker deployment;
# tests/test_dev_cluster.py runs it directly against `hercules dev`:
#     tests/docker/gateway_checks.sh http://127.0.0.1:8089
# The cluster's chunk size must be 1 MiB (HERCULES_CHUNK_SIZE=1MiB). HERCULES_TOKEN, when set, is
# sent as the bearer token by curl and by the CLI (a gateway with HERCULES_AUTH_FILE); HERCULES_CLI
# is the command line to run (default .venv/bin/hercules).
# Needs: $GATEWAY, $work (a scratch directory), and the counters passed/failed, T0.

step() { printf '\n=== [%4d s] %s\n' $((SECONDS - T0)) "$*"; }
ok() { passed=$((passed + 1)); printf '  ok   %s\n' "$*"; }
fail() {
    failed=$((failed + 1))
    printf '  FAIL %s\n' "$*"
    exit 1
}
check() {  # check DESCRIPTION COMMAND... : run it, count it
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

# curl with a bound and the bearer token if there is one; -f so that HTTP errors fail.
http() { curl -fsS --max-time 60 ${HERCULES_TOKEN:+-H "Authorization: Bearer $HERCULES_TOKEN"} "$@"; }
status_of() {  # the HTTP status of a GET
    curl -s -o /dev/null -w '%{http_code}' --max-time 30 ${HERCULES_TOKEN:+-H "Authorization: Bearer $HERCULES_TOKEN"} "$1"
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
same_file() {  # same_file PATH LOCAL : download PATH through the gateway and compare
    http -o "$work/download" "$GATEWAY/api/v1/files/$1" && cmp -s "$work/download" "$2"
}

host_cli() {  # the hercules command line, run on the host, through the gateway port
    timeout 120 "${HERCULES_CLI:-.venv/bin/hercules}" --gateway "$GATEWAY" "$@"
}
host_cli_round_trip() {
    host_cli mkdir -p /e2e/host-cli && host_cli put "$work/big.bin" "$work/keep.txt" /e2e/host-cli/ \
        && host_cli get /e2e/host-cli/big.bin "$work/host-big.bin" && cmp -s "$work/host-big.bin" "$work/big.bin" \
        && [[ "$(host_cli ls /e2e/host-cli)" == $'big.bin\nkeep.txt' ]] \
        && [[ "$(host_cli cat /e2e/host-cli/keep.txt)" == "$(cat "$work/keep.txt")" ]] \
        && host_cli rm -r /e2e/host-cli
}
host_cli_says_missing() {
    local err
    err=$(host_cli stat /e2e/nothing-here 2>&1 >/dev/null) && return 1
    echo "  $err"
    [[ "$err" == "hercules: cannot stat '/e2e/nothing-here': No such file or directory" ]]
}

gateway_file_checks() {  # leaves /e2e/big.bin and /e2e/dir/keep.txt (and their copies in $work)
    step "files through the gateway ($GATEWAY)"
    head -c $((8 << 20)) /dev/urandom >"$work/big.bin"
    head -c 3000 /dev/urandom | base64 >"$work/keep.txt"
    echo "short-lived" >"$work/small.txt"
    local reply listing
    reply=$(http -X PUT --data-binary @"$work/big.bin" "$GATEWAY/api/v1/files/e2e/big.bin")
    echo "  $reply"
    check "PUT an 8 MiB file: 8 chunks of 1 MiB" test "$(json 'd["size"] == 8 << 20 and d["chunk_count"] == 8' <<<"$reply")" = True
    check "PUT a small file" http -o /dev/null -X PUT --data-binary @"$work/small.txt" "$GATEWAY/api/v1/files/e2e/small.txt"
    check "PUT a file in a subdirectory" http -o /dev/null -X PUT --data-binary @"$work/keep.txt" "$GATEWAY/api/v1/files/e2e/dir/keep.txt"
    check "GET the 8 MiB file: identical" same_file e2e/big.bin "$work/big.bin"
    check "GET the small file: identical" same_file e2e/small.txt "$work/small.txt"
    listing=$(http "$GATEWAY/api/v1/list?path=/e2e")
    echo "  $listing"
    check "list /e2e: big.bin, dir, small.txt" \
        test "$(json 'sorted(e["name"] for e in d["entries"])' <<<"$listing")" = "['big.bin', 'dir', 'small.txt']"
    check "DELETE the small file" http -o /dev/null -X DELETE "$GATEWAY/api/v1/files/e2e/small.txt"
    check "the deleted file is gone (404)" test "$(status_of "$GATEWAY/api/v1/files/e2e/small.txt")" = 404
    check "list /e2e no longer shows it" \
        test "$(http "$GATEWAY/api/v1/list?path=/e2e" | json 'sorted(e["name"] for e in d["entries"])')" = "['big.bin', 'dir']"
}

host_cli_checks() {
    step "the host's command line through the gateway (hercules --gateway $GATEWAY)"
    check "host CLI: mkdir, put, get (identical), ls, cat, rm -r" host_cli_round_trip
    check "host CLI: a missing path is one coreutils-style line, exit 1" host_cli_says_missing
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then  # run, not sourced: check the cluster at $1
    set -euo pipefail
    cd "$(dirname "$0")/../.."
    GATEWAY=${1:?usage: tests/docker/gateway_checks.sh GATEWAY_URL}
    T0=$SECONDS
    passed=0
    failed=0
    work=$(mktemp -d)
    trap 'rc=$?; rm -rf "$work"; [[ $rc -eq 0 || $failed -gt 0 ]] || failed=1
          echo; echo "gateway checks: $passed passed, $failed failed"; exit $rc' EXIT
    gateway_file_checks
    host_cli_checks
fi
