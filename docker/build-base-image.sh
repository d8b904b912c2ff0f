#!/usr/bin/env bash
# Provide the Dockerfile's base image locally, for machines that reach no image registry.
#
#   docker/build-base-image.sh [IMAGE]        (default: python:3.11-slim-bookworm)
#
# If IMAGE is already in the local image store it is reused. If PULL_BASE=1 it is
# pulled from its registry first. Otherwise a minimal Debian bookworm root file
# system with python3 and python3-venv is made with debootstrap (from the Debian
# mirror apt already uses) and imported under IMAGE, so `docker build` finds it
# and never needs a registry. Needs root and debootstrap (installed if missing).
set -euo pipefail

IMAGE=${1:-${BASE_IMAGE:-python:3.11-slim-bookworm}}
SUITE=${SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-}

log() { printf '[base-image] %s\n' "$*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE is present locally; reusing it"
    exit 0
fi

if [[ "${PULL_BASE:-0}" == 1 ]] && timeout 300 docker pull "$IMAGE"; then
    exit 0
fi

if [[ -z "$MIRROR" ]]; then
    # The first Debian mirror apt is configured with (deb822 or one-line format).
    MIRROR=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | awk 'NR == 1' || true)
    [[ -n "$MIRROR" ]] || MIRROR=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{print $2}' | grep -v security | awk 'NR == 1' || true)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi

if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
fi

work=$(mktemp -d /var/tmp/hercules-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

log "building $IMAGE: debootstrap $SUITE from $MIRROR (python3, python3-venv)"
started=$SECONDS
if ! debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$root" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1; then
    tail -n 40 "$work/debootstrap.log" >&2
    log "debootstrap failed"
    exit 1
fi

# Slim it down the way Debian's own container images are: no package caches,
# no index files, no docs or man pages.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
       "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
       "$root"/usr/share/info/* "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache 2>/dev/null || true
find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
# The mirror for `apt-get` inside containers built from it (the same one as here).
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$root/etc/apt/sources.list"

tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'LABEL org.hercules.base-image="debootstrap '"$SUITE"' (local stand-in for '"$IMAGE"')"' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
log "imported $IMAGE in $((SECONDS - started)) s: $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
