"""script/entrypoint.sh (the Airflow containers' entrypoint), run for real against stand-in
``airflow`` and ``pip`` commands in an environment like an Airflow container's.
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
    (( count > ${FAKE_DB_FAILURES:-0} ))
fi
"""
FAKE_PIP = """#!/usr/bin/env bash
printf 'pip %s\\n' "$*" >> "$FAKE_LOG"
"""


@pytest.fixture
def airflow_container(tmp_path: Path) -> dict[str, str]:
    """An environment like an Airflow container's, with stand-in `airflow` and `pip` commands."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name, body in (("airflow", FAKE_AIRFLOW), ("pip", FAKE_PIP)):
        (fake_bin / name).write_text(body)
        (fake_bin / name).chmod(0o755)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("kafka-python==3.0.12\n")
    (tmp_path / "home").mkdir()
    return {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_STATE": str(tmp_path / "db-checks"),
        "AIRFLOW_REQUIREMENTS_FILE": str(requirements),
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
def test_entrypoint_runs_the_component_once_postgres_answers(
    airflow_container: dict[str, str], component: str
) -> None:
    result, calls = entrypoint(airflow_container, component, "--flag", FAKE_DB_FAILURES="2")
    assert result.returncode == 0, result.stderr
    assert calls == ["airflow db check"] * 3 + [f"airflow {component} --flag"], calls


def test_entrypoint_gives_up_on_postgres_with_the_fix(airflow_container: dict[str, str]) -> None:
    result, calls = entrypoint(
        airflow_container, "scheduler", FAKE_DB_FAILURES="100000", POSTGRES_WAIT_SECONDS="1"
    )
    assert result.returncode != 0
    assert "Postgres" in result.stderr and "POSTGRES_PASSWORD" in result.stderr, result.stderr
    assert "airflow scheduler" not in calls


def test_entrypoint_installs_requirements_only_when_asked_and_only_once(
    airflow_container: dict[str, str],
) -> None:
    _, calls = entrypoint(airflow_container, "scheduler")
    assert not any(call.startswith("pip") for call in calls), "installed without being asked"

    asked = {**airflow_container, "AIRFLOW_INSTALL_REQUIREMENTS": "true"}
    _, calls = entrypoint(asked, "scheduler")
    installs = [call for call in calls if call.startswith("pip install")]
    assert (
        len(installs) == 1 and f"-r {airflow_container['AIRFLOW_REQUIREMENTS_FILE']}" in installs[0]
    )
    assert calls.index(installs[0]) < calls.index("airflow scheduler")

    _, calls = entrypoint(asked, "scheduler")
    assert not any(call.startswith("pip") for call in calls), (
        "a restart reinstalled unchanged requirements"
    )

    Path(airflow_container["AIRFLOW_REQUIREMENTS_FILE"]).write_text(
        "kafka-python==3.0.12\nrequests\n"
    )
    _, calls = entrypoint(asked, "scheduler")
    assert any(call.startswith("pip install") for call in calls), (
        "changed requirements were not installed"
    )


def test_entrypoint_fails_clearly_when_asked_to_install_a_missing_file(
    airflow_container: dict[str, str],
) -> None:
    result, _ = entrypoint(
        airflow_container,
        "scheduler",
        AIRFLOW_INSTALL_REQUIREMENTS="true",
        AIRFLOW_REQUIREMENTS_FILE="/nope.txt",
    )
    assert result.returncode != 0 and "/nope.txt" in result.stderr


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
        assert calls[-1] == "airflow db migrate", calls
    passwords = Path(airflow_container["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert json.loads(passwords.read_text()) == {"admin": password}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600


def test_entrypoint_init_without_an_admin_password_stops_before_migrating(
    airflow_container: dict[str, str],
) -> None:
    result, calls = entrypoint(airflow_container, "init", AIRFLOW_ADMIN_USERNAME="admin")
    assert result.returncode != 0 and "AIRFLOW_ADMIN_PASSWORD" in result.stderr
    assert "airflow db migrate" not in calls


def test_entrypoint_without_a_component_prints_usage(airflow_container: dict[str, str]) -> None:
    result, calls = entrypoint(airflow_container)
    assert result.returncode != 0 and "usage" in result.stderr and calls == []
