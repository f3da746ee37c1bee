#!/usr/bin/env bash
# Entrypoint of the Airflow containers (docker-compose.yml):
#   entrypoint.sh init | api-server | scheduler | dag-processor | triggerer
#   (or what the image's entrypoint takes: bash ..., python ..., another airflow subcommand)
#
# 1. waits until Postgres accepts Airflow's connection (and shows Airflow's own error if not),
# 2. hands the component to the image's /entrypoint, which sets up what the image needs (its
#    LD_PRELOAD fix for arm64, umask 0002, a passwd entry for an arbitrary UID) and runs airflow.
#    `init` first writes the admin's password for Airflow's simple auth manager from
#    AIRFLOW_ADMIN_USERNAME / AIRFLOW_ADMIN_PASSWORD, then migrates the metadata database.
# Nothing is installed here: the packages are in the image (airflow.Dockerfile). Every step is
# safe to repeat, so a restarted container simply runs it again.
set -euo pipefail

readonly COMPONENTS="init api-server scheduler dag-processor triggerer"
# The image's own entrypoint (a test points this at a stand-in).
readonly IMAGE_ENTRYPOINT="${AIRFLOW_IMAGE_ENTRYPOINT:-/entrypoint}"

log() { printf '%s entrypoint: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

wait_for_postgres() {
    local timeout="${POSTGRES_WAIT_SECONDS:-120}"
    local deadline=$((SECONDS + timeout))
    local output
    until output="$(airflow db check 2>&1)"; do
        if ((SECONDS >= deadline)); then
            printf '%s\n' "${output}" >&2
            die "\`airflow db check\` still fails after ${timeout}s (its last output is above). If it says the password failed, POSTGRES_PASSWORD in .env is not the one the postgres-data volume was created with; if it cannot reach postgres:5432, read \`./run-docker.sh logs postgres\`"
        fi
        sleep "${POSTGRES_WAIT_INTERVAL:-3}"
    done
    log "Postgres is ready"
}

write_admin_password() {
    local file="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE is not set}"
    : "${AIRFLOW_ADMIN_USERNAME:?set AIRFLOW_ADMIN_USERNAME (the Airflow login) in .env}"
    : "${AIRFLOW_ADMIN_PASSWORD:?set AIRFLOW_ADMIN_PASSWORD in .env (./run-docker.sh generates it)}"
    mkdir -p "$(dirname "${file}")"
    # JSON {"user": "password"}, the format the simple auth manager reads; python quotes it.
    (
        umask 077
        python3 -c 'import json, os, sys
json.dump({os.environ["AIRFLOW_ADMIN_USERNAME"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, sys.stdout)' > "${file}.tmp"
    )
    mv "${file}.tmp" "${file}"
    log "admin login ${AIRFLOW_ADMIN_USERNAME} written to ${file}"
}

# The init container runs as root (to own fresh volumes); the other components run as the
# image's airflow user and must be able to write what init created.
hand_volumes_to_airflow_user() {
    if [[ "$(id -u)" != "0" ]] || ! id airflow >/dev/null 2>&1; then
        return 0
    fi
    local dir
    for dir in "$(dirname "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}")" "${AIRFLOW_HOME:-/opt/airflow}/logs"; do
        if [[ -d "${dir}" ]]; then
            chown -R airflow:0 "${dir}"
        fi
    done
}

main() {
    if (($# == 0)); then
        die "usage: entrypoint.sh {${COMPONENTS// /|}} [args...], or bash/python/an airflow subcommand"
    fi
    local component="$1"
    shift
    wait_for_postgres
    case "${component}" in
        init)
            write_admin_password
            hand_volumes_to_airflow_user
            log "migrating the metadata database; the other Airflow components start once it is done"
            exec "${IMAGE_ENTRYPOINT}" airflow db migrate
            ;;
        scheduler)
            exec "${IMAGE_ENTRYPOINT}" airflow "${component}" "$@"
            ;;
        api-server | dag-processor | triggerer)
            # Airflow's own command, its idle loop slowed (script/airflow_quiet.py).
            exec "${IMAGE_ENTRYPOINT}" python -m script.airflow_quiet "${component}" "$@"
            ;;
        *)
            exec "${IMAGE_ENTRYPOINT}" "${component}" "$@"
            ;;
    esac
}

main "$@"
