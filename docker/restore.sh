#!/usr/bin/env bash
# `make restore BACKUP=...`: put an archive made by docker/backup.sh back, then start the cluster.
#
#   docker/restore.sh FILE           FILE: a path, or a name in backups/
#
# 1. stops and removes the containers (`down`; images are kept),
# 2. replaces every volume found in the archive with its contents from the archive
#    (volumes of the project that the archive lacks are left alone),
# 3. installs the archive's consistent metadata copy into the master's ROOT_DIR with
#    `hercules restore --force` (over the live file copied with the volume),
# 4. starts the cluster with as many scaled chunkservers as the archive has data
#    slots for, so every replica's chunks are served again, and waits until healthy.
# Set NO_START=1 to stop after step 3.
set -euo pipefail
cd "$(dirname "$0")/.."
. docker/lib.sh

[[ $# -eq 1 ]] || die "usage: $0 FILE"
archive=$1
[[ -f "$archive" ]] || archive="backups/$1"
[[ -f "$archive" ]] || die "no backup $1 (nor backups/$1)"
archive_dir=$(cd "$(dirname "$archive")" && pwd)
archive_name=$(basename "$archive")
docker image inspect "$HELPER_IMAGE" >/dev/null 2>&1 || die "image $HELPER_IMAGE is missing: make build-all"

listing=$(tar -tzf "$archive")
grep -qx 'MANIFEST' <<<"$listing" || die "$archive is not a Hercules backup (no MANIFEST)"
mapfile -t keys < <(sed -nE 's#^(\./)?volumes/([^/]+)/?$#\2#p' <<<"$listing" | sort -u)
[[ ${#keys[@]} -gt 0 ]] || die "$archive holds no volumes"
slots=$(grep -cE '^(\./)?volumes/chunk-scaled-data/slot-[0-9]+/$' <<<"$listing" || true)

log "restoring ${#keys[@]} volumes from $archive: ${keys[*]}"
"${compose[@]}" down --remove-orphans

mounts=()
for key in "${keys[@]}"; do
    volume="${project}_$key"
    if docker volume inspect "$volume" >/dev/null 2>&1; then
        docker volume rm "$volume" >/dev/null
    fi
    # The labels docker-compose puts on its volumes, so that it adopts these silently.
    docker volume create --label "com.docker.compose.project=$project" \
        --label "com.docker.compose.volume=$key" "$volume" >/dev/null
    mounts+=(-v "$volume:/restore/volumes/$key")
done

docker run --rm --user 0:0 --entrypoint tar -v "$archive_dir:/in:ro" "${mounts[@]}" "$HELPER_IMAGE" \
    --numeric-owner -xzpf "/in/$archive_name" -C /restore volumes

if grep -qx 'metadata.sqlite3' <<<"$listing" && [[ " ${keys[*]} " == *" master-data "* ]]; then
    log "installing the consistent metadata copy (hercules restore --force)"
    docker run --rm --entrypoint sh -e ROOT_DIR=/data/master -v "$archive_dir:/in:ro" \
        -v "${project}_master-data:/data/master" "$HELPER_IMAGE" -c '
            set -e
            tar -xzf "/in/$1" -C /tmp metadata.sqlite3
            hercules restore /tmp/metadata.sqlite3 --force' sh "$archive_name" >&2
fi

if [[ "${NO_START:-0}" == 1 ]]; then
    log "restored; not starting (NO_START=1)"
    exit 0
fi
log "starting the cluster with $((3 + slots)) chunkservers (3 named + $slots scaled)"
"${compose[@]}" up -d --scale "chunkserver=$slots"
docker/wait-healthy.sh
