#!/usr/bin/env bash
# Entrypoint of the Airflow containers (docker-compose.yml):
#   entrypoint.sh init | api-server | scheduler | dag-processor | triggerer   (or any command)
#
# 1. installs the requirements file when AIRFLOW_INSTALL_REQUIREMENTS=true (once per file content),
# 2. waits until Postgres accepts Airflow's connection,
# 3. runs the component. `init` migrates the metadata database and writes the admin's password
#    for Airflow's simple auth manager from AIRFLOW_ADMIN_USERNAME / AIRFLOW_ADMIN_PASSWORD.
# Every step is safe to repeat, so a restarted container simply runs it again.
set -euo pipefail

readonly COMPONENTS="init api-server scheduler dag-processor triggerer"

log() { printf '%s entrypoint: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

install_requirements() {
    if [[ "${AIRFLOW_INSTALL_REQUIREMENTS:-false}" != "true" ]]; then
        return 0
    fi
    local file="${AIRFLOW_REQUIREMENTS_FILE:-/opt/airflow/requirements.txt}"
    [[ -f "${file}" ]] || die "AIRFLOW_INSTALL_REQUIREMENTS=true but ${file} does not exist: mount requirements.txt there or set AIRFLOW_INSTALL_REQUIREMENTS=false"
    local stamp="${HOME}/.cache/airflow-requirements.sha256"
    local digest
    digest="$(sha256sum "${file}" | cut -d' ' -f1)"
    if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${digest}" ]]; then
        log "requirements from ${file} already installed"
        return 0
    fi
    log "installing requirements from ${file}"
    pip install --no-cache-dir --disable-pip-version-check -r "${file}" \
        || die "pip could not install ${file}; read the pip output above"
    mkdir -p "$(dirname "${stamp}")"
    printf '%s\n' "${digest}" > "${stamp}"
}

wait_for_postgres() {
    local timeout="${POSTGRES_WAIT_SECONDS:-120}"
    local deadline=$((SECONDS + timeout))
    until airflow db check >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "Postgres did not accept Airflow's connection within ${timeout}s: check \`docker compose logs postgres\` and that POSTGRES_PASSWORD in .env is the one the postgres-data volume was created with"
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
        die "usage: entrypoint.sh {${COMPONENTS// /|}} [args...] or any command"
    fi
    local component="$1"
    shift
    install_requirements
    wait_for_postgres
    case "${component}" in
        init)
            write_admin_password
            airflow db migrate
            hand_volumes_to_airflow_user
            log "database migrated; the other Airflow components can start"
            ;;
        api-server | scheduler | dag-processor | triggerer)
            exec airflow "${component}" "$@"
            ;;
        *)
            exec "${component}" "$@"
            ;;
    esac
}

main "$@"
