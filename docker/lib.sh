# Shared by the docker/*.sh helpers (sourced, not run). Expects to run from the
# repository root, as the Makefile does.
COMPOSE=${COMPOSE:-$(if command -v docker-compose >/dev/null 2>&1; then echo docker-compose; else echo docker compose; fi)}
read -r -a compose <<<"$COMPOSE"
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-hercules}
project=$COMPOSE_PROJECT_NAME
IMAGE_TAG=${IMAGE_TAG:-latest}
# Any role image has the tools the helpers need (tar, hercules); the master's is used.
HELPER_IMAGE=${HELPER_IMAGE:-hercules-master:$IMAGE_TAG}

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The project's containers (all states), one id a line.
project_containers() {
    docker ps -aq --filter "label=com.docker.compose.project=$project"
}

# The project's volumes, one name a line.
project_volumes() {
    docker volume ls -q --filter "label=com.docker.compose.project=$project"
}

# The id of the running container of a service, empty if none.
running_container() {
    docker ps -q --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=$1" --filter status=running | awk "NR == 1"
}
