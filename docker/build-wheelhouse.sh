#!/usr/bin/env bash
# Fill wheelhouse/ for an offline image build (the Dockerfile installs from it when present).
#
#   docker/build-wheelhouse.sh [PYTHON]       (default: python3; run from the repository root)
#
# The project and its plugins are built into wheels; every dependency, and the
# build tools pip needs to build the project inside the image (setuptools,
# wheel), is downloaded as a *binary* wheel only (--only-binary=:all:), so
# nothing compiled against this host ends up in it. The wheels must suit the
# image's Python: pass PYTHON of the same minor version (the images use 3.11),
# or set WHEEL_PLATFORM (e.g. manylinux_2_36_x86_64) to fetch for another glibc.
set -euo pipefail

PYTHON=${1:-${PYTHON:-python3}}
OUT=${WHEELHOUSE:-wheelhouse}
PLUGINS=(plugins/transport_tcp plugins/store_fs plugins/store_zstd)

log() { printf '[wheelhouse] %s\n' "$*" >&2; }

minor=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
if [[ "$minor" != 311 && -z "${WHEEL_PLATFORM:-}" ]]; then
    # Fetch for the images' Python and glibc (bookworm: 2.36) instead of this host's.
    WHEEL_PLATFORM=manylinux_2_36_$(uname -m)
    log "$PYTHON is Python $minor, the images run 3.11: fetching wheels for cp311 $WHEEL_PLATFORM"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip >/dev/null 2>&1 || true

mkdir -p "$OUT"
out_abs=$(cd "$OUT" && pwd)
rm -f "$OUT"/hercules-*.whl "$OUT"/hercules_*.whl
log "building the project's wheels"
# Fixed timestamps make the wheels byte-identical for the same sources, so an
# unchanged tree keeps the image build's layer cache.
# Built from a copy, so that no build/ or *.egg-info is left in the work tree.
mkdir -p "$tmp/src"
tar -c --exclude=build --exclude=dist --exclude='*.egg-info' --exclude=__pycache__ \
    pyproject.toml README.md hercules_core "${PLUGINS[@]}" | tar -x -C "$tmp/src"
(cd "$tmp/src" && SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800} \
    "${pip[@]}" wheel --no-deps -w "$out_abs" . "${PLUGINS[@]}")

platform_args=()
if [[ -n "${WHEEL_PLATFORM:-}" ]]; then
    platform_args=(--platform "$WHEEL_PLATFORM" --python-version 3.11 --implementation cp --abi cp311)
    # manylinux_2_36 admits every older manylinux tag, but pip matches the exact names given:
    platform_args+=(--platform manylinux2014_"$(uname -m)" --platform manylinux_2_17_"$(uname -m)"
                    --platform manylinux_2_28_"$(uname -m)" --platform manylinux1_"$(uname -m)")
fi
log "downloading binary wheels of the dependencies"
# The local wheels are named by path so that "hercules" never resolves to another
# project of that name on the index.
"${pip[@]}" download --only-binary=:all: "${platform_args[@]}" -d "$OUT" \
    "$OUT"/hercules-*.whl "$OUT"/hercules_*.whl "setuptools>=77" wheel \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
log "$(ls "$OUT"/*.whl | wc -l) wheels in $OUT/"
