#!/usr/bin/env bash
# `make backup`: one timestamped archive of every volume of the project.
#
#   docker/backup.sh [DIR]           (default: backups/) -> DIR/hercules-YYYYmmdd-HHMMSS.tar.gz
#
# The archive holds:
#   MANIFEST                  when, which project, which volumes, the image
#   metadata.sqlite3          the master's metadata, a consistent online copy made by
#                             `hercules backup` inside the running master (SQLite backup API)
#   volumes/<volume>/...      the files of each volume (master-data, chunk1-data, ...,
#                             chunk-scaled-data, gateway-data and the log volumes)
#
# The cluster keeps running. Chunk files are copied as they are: a chunk written
# after the metadata copy is either absent from the metadata (and collected as
# garbage after a restore) or at a newer version than the restored metadata
# expects; for a backup that is consistent to the byte, stop writers first
# (or `make down`, then back up: it works on a stopped cluster too).
set -euo pipefail
cd "$(dirname "$0")/.."
. docker/lib.sh

out_dir=${1:-backups}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
stamp=$(date +%Y%m%d-%H%M%S)
name="hercules-$stamp.tar.gz"

docker image inspect "$HELPER_IMAGE" >/dev/null 2>&1 || die "image $HELPER_IMAGE is missing: make build-master"
mapfile -t volumes < <(project_volumes)
[[ ${#volumes[@]} -gt 0 ]] || die "project $project has no volumes: nothing to back up"

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
chmod 0777 "$staging"  # written by the image's unprivileged user

master_volume="${project}_master-data"
master=$(running_container master)
if [[ -n "$master" ]]; then
    log "metadata: online copy inside the running master"
    tmp="/tmp/hercules-metadata-$stamp.sqlite3"
    docker exec "$master" hercules backup --out "$tmp" >&2
    docker cp "$master:$tmp" "$staging/metadata.sqlite3"
    docker exec "$master" rm -f "$tmp"
elif docker volume inspect "$master_volume" >/dev/null 2>&1; then
    log "metadata: the master is stopped; copying from its volume"
    docker run --rm -e ROOT_DIR=/data/master -v "$master_volume:/data/master" -v "$staging:/out" \
        "$HELPER_IMAGE" hercules backup --out /out/metadata.sqlite3 >&2
else
    log "warning: no master volume ($master_volume): the archive has no metadata copy"
fi

mounts=()
{
    echo "project: $project"
    echo "created: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "image: $HELPER_IMAGE $(docker image inspect --format '{{.Id}}' "$HELPER_IMAGE")"
    echo "metadata: $([[ -f "$staging/metadata.sqlite3" ]] && echo metadata.sqlite3 || echo none)"
    echo "volumes:"
} >"$staging/MANIFEST"
for volume in "${volumes[@]}"; do
    key=$(docker volume inspect --format '{{index .Labels "com.docker.compose.volume"}}' "$volume")
    key=${key:-${volume#"${project}_"}}
    mounts+=(-v "$volume:/backup/volumes/$key:ro")
    echo "  - $key ($volume)" >>"$staging/MANIFEST"
done

log "archiving ${#volumes[@]} volumes"
docker run --rm --user 0:0 --entrypoint sh \
    -v "$staging:/backup/meta:ro" -v "$out_dir:/out" "${mounts[@]}" "$HELPER_IMAGE" -c '
        set -e
        cp /backup/meta/* /backup/
        cd /backup
        # live volumes: a chunk written or collected while tar reads is expected (see above), so
        # "file changed as we read it" (exit 1) and a file gone before it was read are no failure
        rc=0
        tar --numeric-owner --warning=no-file-changed --warning=no-file-removed --ignore-failed-read \
            -czf "/out/$1.part" MANIFEST $(ls metadata.sqlite3 2>/dev/null) volumes || rc=$?
        [ "$rc" -le 1 ] || exit "$rc"
        chown "$2" "/out/$1.part"
        mv "/out/$1.part" "/out/$1"' sh "$name" "$(id -u):$(id -g)"
log "wrote $out_dir/$name ($(du -h "$out_dir/$name" | cut -f1))"
echo "$out_dir/$name"
