#!/usr/bin/env bash
# The local stack without Docker: ./run.sh [up|down|status|clean|stream|cqlsh|test|...].
# This script only makes sure the project venv exists and is current, then hands over to
# script/ (python -m script), which starts ZooKeeper, Kafka, Cassandra, PostgreSQL and Airflow.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${STACK_STATE_DIR:-$repo/.stack}"
venv="$state/venv"

die() { printf '[run.sh] ERROR: %s\n' "$*" >&2; exit 1; }

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

ensure_venv() {
  command -v java >/dev/null 2>&1 || die "Java 17 is required (java not on PATH)"
  command -v mvn >/dev/null 2>&1 || die "Maven is required (mvn not on PATH): apt-get install maven"
  local python want have=""
  # requirements.txt and the files it includes (-r requirements-airflow.txt, requirements-monitor.txt).
  want="$(cat "$repo/requirements.txt" "$repo/requirements-airflow.txt" "$repo/requirements-monitor.txt" \
    | sha256sum | cut -d' ' -f1)"
  [ -f "$venv/.requirements.sha256" ] && have="$(cat "$venv/.requirements.sha256")"
  [ "$want" = "$have" ] && return 0
  python="$(find_python)" || die "Python 3.11 is required (set PYTHON=/path/to/python3.11)"
  if [ ! -x "$venv/bin/python" ]; then
    echo "[run.sh] creating the project venv in ${venv#"$repo"/} ..."
    "$python" -m venv "$venv"
  fi
  echo "[run.sh] installing requirements.txt into the venv (first run: a few minutes) ..."
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet --progress-bar off -r "$repo/requirements.txt"
  echo "$want" > "$venv/.requirements.sha256"
}

ensure_venv
export PATH="$venv/bin:$PATH"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/python" -m script "$@"
