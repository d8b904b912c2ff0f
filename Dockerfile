# Hercules: one image for every role (master, chunkserver, gateway).
#
#   docker build --build-arg SERVER_TYPE=master_server  -t hercules-master .
#   docker build --build-arg SERVER_TYPE=chunk_server   -t hercules-chunkserver .
#   docker build --build-arg SERVER_TYPE=gateway_server -t hercules-gateway .
#
# SERVER_TYPE only sets the default role: any image runs any role when the
# container's SERVER_TYPE environment variable says so.
#
# Offline builds: when the build context holds a wheelhouse/ directory with
# wheels in it, every Python package comes from there (pip --no-index);
# otherwise pip installs from PyPI as usual. `tests/docker/e2e.sh` shows how
# to fill it on a machine that has PyPI but whose build cannot reach it.
#
# Written for both the classic builder and BuildKit (no RUN --mount, no COPY --chmod).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------
# build: a virtual environment with Hercules, the plugins a server needs and
# their dependencies. Nothing from this stage but /opt/hercules reaches the image.
# Not installed: the benchmark (plugins/bench, `hercules bench`: left out of the
# build context by .dockerignore), the faults transport and the fsspec plugin.
FROM ${BASE_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# Extra pip requirements baked into the image, e.g. third-party plugins:
#   docker build --build-arg EXTRA_PIP="hercules-store-s3==1.2" ...
# (with a wheelhouse/, their wheels must be in it too).
ARG EXTRA_PIP=""

WORKDIR /src
COPY . /src

RUN set -eu; \
    python3 -m venv /opt/hercules; \
    if ls wheelhouse/*.whl >/dev/null 2>&1; then \
        echo "installing offline from wheelhouse/"; \
        export PIP_NO_INDEX=1 PIP_FIND_LINKS=/src/wheelhouse; \
        echo wheelhouse >/opt/hercules/INSTALLED_FROM; \
    else \
        echo "no wheelhouse/: installing from the package index"; \
        echo index >/opt/hercules/INSTALLED_FROM; \
    fi; \
    /opt/hercules/bin/pip install \
        . ./plugins/transport_tcp ./plugins/store_fs ./plugins/store_zstd ./plugins/s3 ${EXTRA_PIP}; \
    /opt/hercules/bin/pip uninstall -q -y setuptools; \
    /opt/hercules/bin/hercules plugins; \
    install -m 0755 docker/entrypoint.py /opt/hercules/bin/docker-entrypoint; \
    sed -i '1s|.*|#!/opt/hercules/bin/python3|' /opt/hercules/bin/docker-entrypoint

# ---------------------------------------------------------------------------
# runtime: the base image, an unprivileged user and the virtual environment.
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="Hercules" \
      org.opencontainers.image.description="Hercules distributed file system (GFS design): master, chunkserver and gateway" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN set -eu; \
    groupadd --gid 10001 hercules; \
    useradd --uid 10001 --gid hercules --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin hercules; \
    mkdir -p /data/master /data/chunks /data/gateway /var/log/hercules; \
    chown -R hercules:hercules /data /var/log/hercules

COPY --from=build /opt/hercules /opt/hercules

ENV PATH=/opt/hercules/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_LEVEL=info \
    LOG_DIR=/var/log/hercules

USER hercules:hercules
WORKDIR /data

# master 9090, chunkservers 8081-8083 (scaled ones use 8081), gateway 8089
EXPOSE 9090 8081 8082 8083 8089 8333

# Asks the role itself: native Ping for master and chunkserver, GET /health for the gateway.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
    CMD ["docker-entrypoint", "health"]

ENTRYPOINT ["docker-entrypoint"]
CMD ["serve"]

# Last, so that the three role images share every layer above.
ARG SERVER_TYPE=master_server
ENV SERVER_TYPE=${SERVER_TYPE}
LABEL org.hercules.server-type=${SERVER_TYPE}
