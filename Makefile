# Hercules developer and deployment targets. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGINS := plugins/transport_tcp plugins/store_fs plugins/store_zstd plugins/transport_faults plugins/fsspec_hercules plugins/bench plugins/s3

.DEFAULT_GOAL := help
.PHONY: help venv run test chromium rclone test-s3

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' $(addprefix -e ,$(PLUGINS))
	@$(MAKE) --no-print-directory chromium
	@$(MAKE) --no-print-directory rclone
	touch $(STAMP)

# Tests that drive a Debian program (no download of their own): $(1) is the package and its command,
# installed with apt-get when missing and running as root; otherwise $(2) $(3), and we say so.
define apt-install-if-missing
@if command -v $(1) >/dev/null 2>&1; then :; \
elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	echo "installing $(1) (apt-get) for $(2)"; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
else echo "note: no $(1); $(2) $(3) (install it: apt-get install $(1))"; fi
endef

rclone: ## Install rclone for the S3 API's rclone test (apt-get, as root, when missing)
	$(call apt-install-if-missing,rclone,tests/test_s3_tools.py's rclone test,will fail)

chromium: ## Install chromium for the dashboard's browser test (apt-get, as root, when missing)
	$(call apt-install-if-missing,chromium,tests/test_dashboard.py,will be skipped)

venv: $(STAMP) ## Create .venv with Hercules, its plugins and the test tools

run: $(STAMP) ## Run a local cluster (master, 3 chunkservers, gateway; data under ./data)
	$(BIN)/hercules dev --data ./data

test: $(STAMP) chromium ## Install everything into .venv and run the test suite
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

S3_TESTS_DEPS := 'munch>=2.0' 'isodate>=0.4.4' pytz 'requests>=2.23' PyYAML httplib2 lxml 'gevent>=1.0'
test-s3: $(STAMP) ## Run ceph's s3-tests (vendored) against a local cluster: the allow-list must pass
	$(BIN)/pip install -q $(S3_TESTS_DEPS)
	$(BIN)/python plugins/s3/s3-tests/run.py

# ---------------------------------------------------------------------------
# Docker deployment (docs/deployment.md). Works with docker-compose 1.29+ or
# `docker compose` v2; the project is always "hercules" (volumes hercules_*).
COMPOSE ?= $(shell if command -v docker-compose >/dev/null 2>&1; then echo docker-compose; else echo docker compose; fi)
export COMPOSE
export COMPOSE_PROJECT_NAME ?= hercules
export IMAGE_TAG ?= latest
BASE_IMAGE ?= python:3.11-slim-bookworm
DOCKER_BUILD_FLAGS ?=
# More pip requirements baked into the images, e.g. a third-party plugin: make build-all EXTRA_PIP="name==1.0"
EXTRA_PIP ?=
DOCKER_BUILD = docker build $(DOCKER_BUILD_FLAGS) --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	$(if $(EXTRA_PIP),--build-arg EXTRA_PIP="$(EXTRA_PIP)")
# `make logs FOLLOW=` prints and returns instead of following.
FOLLOW ?= -f
TAIL ?= 200
# What `make dev-chunk` runs: chunkserver CHUNK (1, 2, 3...) on port 8080+CHUNK.
CHUNK ?= 1

.PHONY: build-all build-master build-chunk build-gateway base-image wheelhouse up down restart status \
	logs logs-master logs-chunk logs-gateway scale backup restore dev-master dev-chunk dev-gateway \
	shell-master shell-chunk1 shell-gateway health network-info ping-master ping-chunks clean \
	clean-volumes test-docker bench

build-all: build-master build-chunk build-gateway ## Build the three role images (hercules-master, -chunkserver, -gateway)

build-master: ## Build the hercules-master image
	$(DOCKER_BUILD) --build-arg SERVER_TYPE=master_server -t hercules-master:$(IMAGE_TAG) .

build-chunk: ## Build the hercules-chunkserver image
	$(DOCKER_BUILD) --build-arg SERVER_TYPE=chunk_server -t hercules-chunkserver:$(IMAGE_TAG) .

build-gateway: ## Build the hercules-gateway image
	$(DOCKER_BUILD) --build-arg SERVER_TYPE=gateway_server -t hercules-gateway:$(IMAGE_TAG) .

base-image: ## Provide BASE_IMAGE locally with debootstrap when no image registry is reachable
	docker/build-base-image.sh $(BASE_IMAGE)

wheelhouse: ## Fill wheelhouse/ so that image builds install offline (no PyPI in the build)
	docker/build-wheelhouse.sh $(PYTHON)

up: ## Start the cluster in the background and wait until every service is healthy
	$(COMPOSE) up -d
	docker/wait-healthy.sh

down: ## Stop and remove the containers and the network (volumes are kept)
	$(COMPOSE) down --remove-orphans

restart: ## Restart every service, then wait until healthy
	$(COMPOSE) restart
	docker/wait-healthy.sh

status: ## Show the services, their state and health
	$(COMPOSE) ps

logs: ## Logs of every service (FOLLOW= to print and return)
	$(COMPOSE) logs $(FOLLOW) --tail=$(TAIL)

logs-master: ## Logs of the master
	$(COMPOSE) logs $(FOLLOW) --tail=$(TAIL) master

logs-chunk: ## Logs of the chunkservers (named and scaled)
	$(COMPOSE) logs $(FOLLOW) --tail=$(TAIL) chunkserver1 chunkserver2 chunkserver3 chunkserver

logs-gateway: ## Logs of the gateway
	$(COMPOSE) logs $(FOLLOW) --tail=$(TAIL) gateway

scale: ## Run N chunkservers in all: the 3 named plus N-3 scaled replicas (make scale N=5)
	@[[ "$(N)" =~ ^[0-9]+$$ && "$(N)" -ge 3 ]] || { echo "usage: make scale N=<chunkservers in all, 3 or more>" >&2; exit 2; }
	$(COMPOSE) up -d --scale chunkserver=$$(( $(N) - 3 ))
	docker/wait-healthy.sh

backup: ## Timestamped tar.gz of every volume into backups/ (master metadata taken consistently)
	docker/backup.sh backups

restore: ## Restore a backup (make restore BACKUP=hercules-YYYYmmdd-HHMMSS.tar.gz) and start the cluster
	@[[ -n "$(BACKUP)" ]] || { echo "usage: make restore BACKUP=<file in backups/ or a path>" >&2; exit 2; }
	docker/restore.sh "$(BACKUP)"

dev-master: $(STAMP) ## Run a master on the host from .venv (127.0.0.1:9090, data in data/dev/master)
	SERVER_TYPE=master_server SERVER_ADDRESS=127.0.0.1:9090 ROOT_DIR=data/dev/master LOG_LEVEL=debug \
		$(BIN)/hercules serve

dev-chunk: $(STAMP) ## Run chunkserver CHUNK (default 1) on the host on port 8080+CHUNK
	SERVER_TYPE=chunk_server SERVER_ADDRESS=127.0.0.1:$$((8080 + $(CHUNK))) MASTER_ADDR=127.0.0.1:9090 \
		ROOT_DIR=data/dev/chunk$(CHUNK) LOG_LEVEL=debug $(BIN)/hercules serve

dev-gateway: $(STAMP) ## Run the gateway on the host (http://127.0.0.1:8089)
	SERVER_TYPE=gateway_server GATEWAY_ADDR=127.0.0.1:8089 MASTER_ADDR=127.0.0.1:9090 LOG_LEVEL=debug \
		$(BIN)/hercules serve

shell-master: ## Open a shell in the master container
	$(COMPOSE) exec master bash

shell-chunk1: ## Open a shell in the chunkserver1 container
	$(COMPOSE) exec chunkserver1 bash

shell-gateway: ## Open a shell in the gateway container
	$(COMPOSE) exec gateway bash

health: ## Ask every running service whether it serves (and show Docker's health state)
	docker/health.sh

network-info: ## Show hercules-net: subnet and the address of every container
	@docker network inspect $(COMPOSE_PROJECT_NAME)_hercules-net --format \
		'{{.Name}}  driver={{.Driver}}  subnet={{range .IPAM.Config}}{{.Subnet}}{{end}}{{"\n"}}{{range .Containers}}  {{printf "%-28s" .Name}} {{.IPv4Address}}{{"\n"}}{{end}}'

ping-master: ## Native Ping from the gateway container to master:9090
	$(COMPOSE) exec -T gateway docker-entrypoint ping master:9090

ping-chunks: ## Native Ping from the gateway container to every chunkserver
	$(COMPOSE) exec -T gateway docker-entrypoint ping chunkserver1:8081 chunkserver2:8082 chunkserver3:8083 --chunkservers

clean: ## Remove the containers, the network and every volume (backups/ is kept)
	$(COMPOSE) down --volumes --remove-orphans

clean-volumes: ## Stop the cluster and delete its volumes (all data!); images and backups/ are kept
	$(COMPOSE) down --remove-orphans
	docker volume ls -q --filter label=com.docker.compose.project=$(COMPOSE_PROJECT_NAME) | xargs -r docker volume rm

test-docker: ## End-to-end test of the images and docker-compose.yml (installs Docker if missing)
	bash tests/docker/e2e.sh

bench: $(STAMP) ## Run the benchmark (hercules bench)
	$(BIN)/hercules bench
