"""script/entrypoint.sh (the Airflow containers' entrypoint), run for real against stand-in
``airflow``, ``pip`` and image ``/entrypoint`` commands in an environment like an Airflow
container's.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from compose_helpers import AIRFLOW_COMPONENTS, ENTRYPOINT, run

FAKE_AIRFLOW = """#!/usr/bin/env bash
printf 'airflow %s\\n' "$*" >> "$FAKE_LOG"
if [[ "$*" == "db check" ]]; then
    count=$(( $(cat "$FAKE_STATE" 2>/dev/null || echo 0) + 1 ))
    echo "$count" > "$FAKE_STATE"
    if (( count <= ${FAKE_DB_FAILURES:-0} )); then
        echo "sqlalchemy.exc.OperationalError: password authentication failed (attempt $count)" >&2
        exit 1
    fi
fi
"""
FAKE_PIP = """#!/usr/bin/env bash
printf 'pip %s\\n' "$*" >> "$FAKE_LOG"
"""
# The image's /entrypoint: records what it was handed (it would then run airflow).
FAKE_IMAGE_ENTRYPOINT = """#!/usr/bin/env bash
printf 'image-entrypoint %s\\n' "$*" >> "$FAKE_LOG"
"""


@pytest.fixture
def airflow_container(tmp_path: Path) -> dict[str, str]:
    """An environment like an Airflow container's, with stand-in `airflow` and `pip` commands."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name, body in (
        ("airflow", FAKE_AIRFLOW),
        ("pip", FAKE_PIP),
        ("entrypoint", FAKE_IMAGE_ENTRYPOINT),
    ):
        (fake_bin / name).write_text(body)
        (fake_bin / name).chmod(0o755)
    (tmp_path / "home").mkdir()
    return {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_STATE": str(tmp_path / "db-checks"),
        "AIRFLOW_IMAGE_ENTRYPOINT": str(fake_bin / "entrypoint"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
            tmp_path / "auth" / "passwords.json"
        ),
        "POSTGRES_WAIT_INTERVAL": "0.1",
    }


def entrypoint(
    env: dict[str, str], *args: str, **extra: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = Path(env["FAKE_LOG"])
    log.write_text("")
    Path(env["FAKE_STATE"]).unlink(missing_ok=True)
    result = run(["bash", str(ENTRYPOINT), *args], env={**env, **extra})
    return result, log.read_text().splitlines()


@pytest.mark.parametrize("component", sorted(AIRFLOW_COMPONENTS.values()))
def test_entrypoint_hands_the_component_to_the_images_entrypoint_once_postgres_answers(
    airflow_container: dict[str, str], component: str
) -> None:
    result, calls = entrypoint(
        airflow_container,
        component,
        "--flag",
        FAKE_DB_FAILURES="2",
        AIRFLOW_INSTALL_REQUIREMENTS="true",  # the old switch: nothing installs at start any more
    )
    assert result.returncode == 0, result.stderr
    # The API server, the DAG processor and the triggerer go through script/airflow_quiet.py
    # (their idle loop); the scheduler is Airflow's own command.
    command = (
        f"python -m script.airflow_quiet {component}"
        if component in ("api-server", "dag-processor", "triggerer")
        else f"airflow {component}"
    )
    assert calls == ["airflow db check"] * 3 + [f"image-entrypoint {command} --flag"], calls


def test_entrypoint_gives_up_on_postgres_with_airflows_own_error_and_the_fix(
    airflow_container: dict[str, str],
) -> None:
    result, calls = entrypoint(
        airflow_container, "scheduler", FAKE_DB_FAILURES="100000", POSTGRES_WAIT_SECONDS="1"
    )
    assert result.returncode != 0
    # The last `airflow db check` said why; its words reach the log, then what to do.
    assert "password authentication failed" in result.stderr, result.stderr
    assert "POSTGRES_PASSWORD" in result.stderr and "logs postgres" in result.stderr
    assert not [call for call in calls if call.startswith("image-entrypoint")], calls


def test_entrypoint_passes_other_commands_to_the_images_entrypoint(
    airflow_container: dict[str, str],
) -> None:
    result, calls = entrypoint(airflow_container, "bash", "-c", "true")
    assert result.returncode == 0, result.stderr
    assert calls[-1] == "image-entrypoint bash -c true", calls


def test_entrypoint_init_writes_the_admin_password_and_migrates(
    airflow_container: dict[str, str],
) -> None:
    password = "p@ss \"quoted\" \\ $HOME 'x'"
    for _ in range(2):  # idempotent: a second run gives the same result
        result, calls = entrypoint(
            airflow_container,
            "init",
            AIRFLOW_ADMIN_USERNAME="admin",
            AIRFLOW_ADMIN_PASSWORD=password,
        )
        assert result.returncode == 0, result.stderr
        assert calls[-1] == "image-entrypoint airflow db migrate", calls
    passwords = Path(airflow_container["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert json.loads(passwords.read_text()) == {"admin": password}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600


def test_entrypoint_init_without_an_admin_password_stops_before_migrating(
    airflow_container: dict[str, str],
) -> None:
    result, calls = entrypoint(airflow_container, "init", AIRFLOW_ADMIN_USERNAME="admin")
    assert result.returncode != 0 and "AIRFLOW_ADMIN_PASSWORD" in result.stderr
    assert not [call for call in calls if "db migrate" in call], calls


def test_entrypoint_without_a_component_prints_usage(airflow_container: dict[str, str]) -> None:
    result, calls = entrypoint(airflow_container)
    assert result.returncode != 0 and "usage" in result.stderr and calls == []
