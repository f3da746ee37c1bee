"""run-docker.sh, run for real against a stand-in ``docker`` in a copy of the project, so the
repository's own .env is never touched. The stand-in records the environment ``docker compose
up`` gets, so the configuration Compose would resolve from it and .env can be rendered.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from compose_helpers import (
    ENV_EXAMPLE,
    REPO,
    VERSIONS_FILE,
    compose_variables,
    environment,
    raw_compose,
    read_env_file,
    resolve,
    run,
)

FAKE_DOCKER = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_DOCKER_LOG"
if [[ " $* " == *" up "* ]]; then
    env -0 > "$FAKE_DOCKER_ENV"
fi
if [[ -n "${FAKE_DOCKER_FAIL_ON:-}" && "$*" == *"$FAKE_DOCKER_FAIL_ON"* ]]; then
    echo "Cannot connect to the Docker daemon" >&2
    exit 1
fi
exit 0
"""


@pytest.fixture
def docker_project(tmp_path: Path) -> Path:
    """A copy of the files run-docker.sh uses, so the real repo's .env is never touched."""
    project = tmp_path / "project"
    (project / "stack").mkdir(parents=True)
    for name in (
        "run-docker.sh",
        ".env.example",
        "docker-compose.yml",
        "docker-compose.cluster.yml",
        "Dockerfile",
    ):
        shutil.copy2(REPO / name, project / name)
    shutil.copy2(VERSIONS_FILE, project / "stack" / "versions.env")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "docker").write_text(FAKE_DOCKER)
    (fake_bin / "docker").chmod(0o755)
    return project


def run_docker_script(
    project: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = project.parent / "docker.log"
    log.write_text("")
    environ = {
        **os.environ,
        "PATH": f"{project.parent / 'bin'}:{os.environ['PATH']}",
        "FAKE_DOCKER_LOG": str(log),
        "FAKE_DOCKER_ENV": str(project.parent / "compose-up.env"),
    }
    environ.update(env)
    result = run(["bash", str(project / "run-docker.sh"), *args], cwd=project, env=environ)
    return result, log.read_text().splitlines()


def test_run_docker_without_a_docker_engine_says_so_and_changes_nothing(
    docker_project: Path,
) -> None:
    result, calls = run_docker_script(docker_project, "up", FAKE_DOCKER_FAIL_ON="info")
    assert result.returncode != 0
    assert "docker info" in result.stderr and "./run.sh" in result.stderr, result.stderr
    assert not (docker_project / ".env").exists()
    assert not any(call.startswith("compose") and "up" in call.split() for call in calls)


def test_run_docker_without_docker_installed_says_so(docker_project: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    for command in ("dirname",):
        (bare / command).symlink_to(shutil.which(command))
    result = run(
        [shutil.which("bash"), str(docker_project / "run-docker.sh")], env={"PATH": str(bare)}
    )
    assert result.returncode != 0 and "docker is not installed" in result.stderr, result.stderr


def compose_up_environment(project: Path) -> dict[str, str]:
    """The environment run-docker.sh gave `docker compose up`."""
    raw = (project.parent / "compose-up.env").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def test_run_docker_up_creates_env_builds_and_waits_for_health(
    docker_project: Path,
) -> None:
    result, calls = run_docker_script(docker_project, "up")
    assert result.returncode == 0, result.stderr

    env_file = docker_project / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    generated = read_env_file(env_file)
    secrets = {k: generated[k] for k, v in read_env_file(ENV_EXAMPLE).items() if not v}
    assert secrets and all(len(v) >= 32 for v in secrets.values()), secrets
    assert len(set(secrets.values())) == len(secrets), "every secret must be different"
    assert len(base64.urlsafe_b64decode(generated["AIRFLOW_FERNET_KEY"])) == 32
    resolve(raw_compose(), generated)  # no required variable is left empty

    build = next(call.split() for call in calls if " build " in f" {call} ")
    assert "--build-arg" not in build, "the build args are docker-compose.yml's (.env can set them)"
    assert calls.index(" ".join(build)) < next(i for i, c in enumerate(calls) if " up " in c)
    up = next(call for call in calls if " up " in f" {call} ")
    assert "--wait" in up.split() and "--detach" in up.split()

    for text in (
        "http://localhost:8080",
        "http://localhost:9021",
        "http://localhost:9022",
        "http://localhost:9090",
        "http://localhost:4040",
        "docker exec -it cassandra cqlsh -u cassandra -p cassandra localhost 9042",
    ):
        assert text in result.stdout, f"run-docker.sh up does not print {text}"


def test_run_docker_up_keeps_an_existing_env(docker_project: Path) -> None:
    run_docker_script(docker_project, "up")
    before = (docker_project / ".env").read_text()
    result, _ = run_docker_script(docker_project, "up")
    assert result.returncode == 0 and (docker_project / ".env").read_text() == before


def rendered(project: Path, shell: dict[str, str]) -> dict:
    """docker-compose.yml as Compose resolves it with `shell`'s environment and the project's
    .env."""
    return resolve(raw_compose(), compose_variables(shell, project / ".env"))


IN_ENV_FILE = {
    "CONFLUENT_VERSION": "7.9.2",
    "AIRFLOW_VERSION": "3.3.3",
    "SPARK_VERSION": "3.5.8",
    "KAFKA_TOPIC": "users_renamed",
    "SPARK_WORKERS": "2",
}


def test_env_counts_through_run_docker_as_through_a_plain_compose_up(docker_project: Path) -> None:
    run_docker_script(docker_project, "up")  # creates .env
    with (docker_project / ".env").open("a") as env_file:
        env_file.writelines(f"{key}={value}\n" for key, value in IN_ENV_FILE.items())
    shell = {k: v for k, v in os.environ.items() if k not in IN_ENV_FILE}
    result, _ = run_docker_script(docker_project, "up")
    assert result.returncode == 0, result.stderr

    via_script = rendered(docker_project, compose_up_environment(docker_project))
    plain = rendered(docker_project, shell)  # `docker compose up` typed in the same shell
    assert via_script["services"] == plain["services"]
    # Without run-docker.sh exporting stack/versions.env, .env's versions and settings hold.
    services = via_script["services"]
    assert services["broker"]["image"] == "confluentinc/cp-server:7.9.2"
    assert services["airflow-scheduler"]["image"].startswith("e2e-data-pipeline/airflow:3.3.3-")
    assert services["airflow-scheduler"]["build"]["args"]["AIRFLOW_VERSION"] == "3.3.3"
    assert services["spark-stream"]["build"]["args"]["SPARK_VERSION"] == "3.5.8"
    assert environment(services["airflow-scheduler"])["KAFKA_TOPIC"] == "users_renamed"
    assert services["spark-worker"]["deploy"]["replicas"] == "2"
    assert "starting 2 Spark worker(s)" in result.stderr, result.stderr


def test_a_shell_variable_beats_env_through_run_docker_as_through_compose(
    docker_project: Path,
) -> None:
    run_docker_script(docker_project, "up")
    with (docker_project / ".env").open("a") as env_file:
        env_file.write("CONFLUENT_VERSION=7.9.2\n")
    result, _ = run_docker_script(
        docker_project, "up", CONFLUENT_VERSION="7.9.3", SPARK_WORKERS="3"
    )
    assert result.returncode == 0, result.stderr
    services = rendered(docker_project, compose_up_environment(docker_project))["services"]
    assert services["broker"]["image"] == "confluentinc/cp-server:7.9.3"
    assert services["spark-worker"]["deploy"]["replicas"] == "3"
    assert "starting 3 Spark worker(s)" in result.stderr


def test_run_docker_refuses_a_spark_workers_that_is_not_a_count(docker_project: Path) -> None:
    result, calls = run_docker_script(docker_project, "up", SPARK_WORKERS="two")
    assert result.returncode != 0 and "SPARK_WORKERS=two" in result.stderr
    assert not any(" up " in f" {call} " for call in calls)


def test_run_docker_reports_a_stack_that_does_not_become_healthy(docker_project: Path) -> None:
    result, calls = run_docker_script(docker_project, "up", FAKE_DOCKER_FAIL_ON="--wait")
    assert result.returncode != 0 and "./run-docker.sh logs" in result.stderr, result.stderr
    assert any(call.endswith("ps --all") for call in calls), "the services' state should be shown"


def test_run_docker_down_and_logs_do_what_they_say(docker_project: Path) -> None:
    run_docker_script(docker_project, "up")
    result, calls = run_docker_script(docker_project, "down", "-v")
    assert result.returncode == 0 and calls[-1].endswith("down -v"), calls
    result, calls = run_docker_script(docker_project, "logs", "spark-stream")
    assert result.returncode == 0 and calls[-1].endswith("logs --follow --tail 200 spark-stream"), (
        calls
    )
    result, _ = run_docker_script(docker_project, "sideways")
    assert result.returncode != 0 and "unknown command" in result.stderr


def test_the_cluster_topology_adds_the_cluster_file_to_every_compose_command(
    docker_project: Path,
) -> None:
    cluster_file = f"--file {docker_project / 'docker-compose.cluster.yml'}"
    result, calls = run_docker_script(docker_project, "up", STACK_TOPOLOGY="cluster")
    assert result.returncode == 0, result.stderr
    composed = [call for call in calls if call.startswith("compose --project-directory")]
    assert composed and all(cluster_file in call for call in composed), composed
    result, calls = run_docker_script(docker_project, "ps")
    assert result.returncode == 0 and not any(cluster_file in call for call in calls), calls
    result, calls = run_docker_script(docker_project, "up", STACK_TOPOLOGY="ring")
    assert result.returncode != 0 and "STACK_TOPOLOGY=ring" in result.stderr
    assert not any(" up " in f" {call} " for call in calls)
