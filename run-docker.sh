#!/usr/bin/env bash
# The whole pipeline in Docker Compose (docker-compose.yml); ./run.sh is the same without Docker.
#
#   ./run-docker.sh [up]               build the Spark and Airflow images, create .env with fresh
#                                      secrets when it is missing, start and wait until all are healthy
#   ./run-docker.sh down [-v]          stop and remove the containers (-v also deletes the data)
#   ./run-docker.sh logs [SERVICE...]  follow the logs
#   ./run-docker.sh ps                 list the services and their health
#
# SPARK_WORKERS=N starts N Spark workers (default 1), WAIT_TIMEOUT in seconds (900): shell or .env.
# STACK_TOPOLOGY=cluster (shell) adds docker-compose.cluster.yml: 3 Cassandra nodes, 3 brokers,
# 2 Spark workers, as `STACK_TOPOLOGY=cluster ./run.sh up` runs them without Docker.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT
readonly ENV_FILE="${ROOT}/.env"
readonly ENV_EXAMPLE="${ROOT}/.env.example"

log() { printf 'run-docker: %s\n' "$*" >&2; }
die() { printf 'run-docker: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# Compose reads .env itself; this script exports nothing into its environment, so a version or
# setting in .env counts exactly as with a plain `docker compose up` (and a variable set in the
# shell beats .env in both). The versions' defaults (stack/versions.env) are in docker-compose.yml.
compose() {
    local files=(--file "${ROOT}/docker-compose.yml")
    case "${STACK_TOPOLOGY:-single}" in
        single | "") ;;
        cluster) files+=(--file "${ROOT}/docker-compose.cluster.yml") ;;
        *) die "STACK_TOPOLOGY=${STACK_TOPOLOGY}: use single or cluster" ;;
    esac
    docker compose --project-directory "${ROOT}" "${files[@]}" "$@"
}

require_docker() {
    command -v docker >/dev/null 2>&1 \
        || die "docker is not installed. Install Docker Desktop or Docker Engine with the compose plugin, or run the pipeline without Docker: ./run.sh"
    docker info >/dev/null 2>&1 \
        || die "the Docker engine is not reachable ('docker info' failed). Start Docker Desktop or the docker service and run ./run-docker.sh again, or run the pipeline without Docker: ./run.sh"
    docker compose version >/dev/null 2>&1 \
        || die "Docker Compose v2 is missing ('docker compose version' failed): install the docker compose plugin"
}

warn_if_little_memory() {
    local bytes
    bytes="$(docker info --format '{{.MemTotal}}' 2>/dev/null || true)"
    if [[ "${bytes}" =~ ^[0-9]+$ ]] && ((bytes > 0 && bytes < 6 * 1024 * 1024 * 1024)); then
        log "warning: Docker has $((bytes / 1024 / 1024)) MiB of memory; the stack needs 6-8 GB with CONTROL_CENTER_REPLICAS=0 in .env, 16 GB with Control Center (Docker Desktop: Settings > Resources)"
    fi
}

random_hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
# Airflow's Fernet key: 32 random bytes, url-safe base64.
fernet_key() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n'; }

# .env from .env.example, every empty `KEY=` line (a secret) filled with a fresh random value.
ensure_env() {
    if [[ -f "${ENV_FILE}" ]]; then
        log "using the existing .env"
        return 0
    fi
    [[ -f "${ENV_EXAMPLE}" ]] || die "${ENV_EXAMPLE} is missing; it is the template for .env"
    local line key tmp
    # mktemp creates the file readable by its owner only, and mv keeps that.
    tmp="$(mktemp "${ENV_FILE}.XXXXXX")"
    while IFS= read -r line || [[ -n "${line}" ]]; do
        if [[ "${line}" =~ ^([A-Z][A-Z0-9_]*)=$ ]]; then
            key="${BASH_REMATCH[1]}"
            if [[ "${key}" == *FERNET_KEY ]]; then
                printf '%s=%s\n' "${key}" "$(fernet_key)"
            else
                printf '%s=%s\n' "${key}" "$(random_hex)"
            fi
        else
            printf '%s\n' "${line}"
        fi
    done < "${ENV_EXAMPLE}" > "${tmp}"
    mv "${tmp}" "${ENV_FILE}"
    log "created .env with generated secrets (git ignores it)"
}

env_value() {
    local key="$1" default="$2" value
    value="$(sed -n "s/^${key}=//p" "${ENV_FILE}" | tail -n 1)"
    printf '%s\n' "${value:-${default}}"
}

# A setting as Compose resolves it: the shell's value, else .env's, else the default.
setting() {
    local key="$1" default="$2"
    if [[ -n "${!key:-}" ]]; then
        printf '%s\n' "${!key}"
    else
        env_value "${key}" "${default}"
    fi
}

print_urls() {
    local user
    user="$(env_value AIRFLOW_ADMIN_USERNAME admin)"
    cat <<EOF

Every service is healthy.
  Airflow          http://localhost:8080   login ${user}, password: AIRFLOW_ADMIN_PASSWORD in .env
  Pipeline page    http://localhost:9022
  Control Center   http://localhost:9021   (CONTROL_CENTER_REPLICAS=0 in .env leaves it out)
  Spark master UI  http://localhost:9090
  Spark job UI     http://localhost:4040
  Cassandra        docker exec -it cassandra cqlsh -u cassandra -p cassandra localhost 9042

Turn on the DAG user_automation in Airflow to start producing users.
Logs: ./run-docker.sh logs [SERVICE]   Stop: ./run-docker.sh down
EOF
}

cmd_up() {
    require_docker
    warn_if_little_memory
    ensure_env
    local workers timeout
    workers="$(setting SPARK_WORKERS 1)"
    timeout="$(setting WAIT_TIMEOUT 900)"
    [[ "${workers}" =~ ^[1-9][0-9]*$ ]] || die "SPARK_WORKERS=${workers} must be a whole number of at least 1"
    [[ "${timeout}" =~ ^[1-9][0-9]*$ ]] || die "WAIT_TIMEOUT=${timeout} must be a whole number of seconds"

    # The versions are build args in docker-compose.yml (stack/versions.env's, or .env's).
    log "building the Spark and Airflow images"
    compose build
    # docker-compose.yml starts SPARK_WORKERS workers (deploy.replicas).
    log "starting ${workers} Spark worker(s) and the rest; waiting up to ${timeout}s for health"
    if ! compose up --detach --wait --wait-timeout "${timeout}"; then
        compose ps --all || true
        die "not every service became healthy in ${timeout}s; read the failing one's log with ./run-docker.sh logs SERVICE"
    fi
    print_urls
}

require_env_file() {
    [[ -f "${ENV_FILE}" ]] || die ".env is missing, so this stack was not started with ./run-docker.sh (run ./run-docker.sh up first)"
}

main() {
    local command="${1:-up}"
    if (($# > 0)); then
        shift
    fi
    case "${command}" in
        up)
            cmd_up
            ;;
        down)
            require_docker
            require_env_file
            compose down "$@"
            ;;
        logs)
            require_docker
            require_env_file
            compose logs --follow --tail 200 "$@"
            ;;
        ps)
            require_docker
            require_env_file
            compose ps --all "$@"
            ;;
        -h | --help | help)
            usage
            ;;
        *)
            usage >&2
            die "unknown command '${command}'"
            ;;
    esac
}

main "$@"
