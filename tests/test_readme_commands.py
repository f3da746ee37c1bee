"""Every `./run.sh` command and CQL query the README shows for the local stack, run as written.

The commands are read from README.md itself, so the two cannot drift: a command is either run
here (and must succeed), or named in ``NOT_RUN_HERE`` with the reason and the test that runs it
instead. A new command in the README that is neither fails the first test.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from pipeline import config

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

# Commands the suite does not run as written, each with why and where it is run instead.
NOT_RUN_HERE = {
    "./run.sh": "a whole pipeline run: .ci/run runs it first; tests/test_runner.py runs one",
    "./run.sh --offline": "a pipeline run: tests/test_runner.py runs `--offline --users 3000`",
    "./run.sh --offline --users 20000": "a pipeline run: .ci/run runs exactly this first",
    "./run.sh --users 20000": "a pipeline run from randomuser.me, offline here: see --offline",
    "./run.sh --users-per-second 4000": "a pipeline run; tests/test_runner.py runs the runner",
    "./run.sh test": "this suite",
    "./run.sh down": "stops the stack the suite runs against: .ci/run runs it last",
    "./run.sh clean": "deletes the stack's data under the suite",
    "./run.sh clean --all": "deletes the venv the suite runs in",
    "./run.sh stream stop": "stops the user's job: tests/test_self_healing.py stops side jobs",
    "./run.sh bench": "minutes of load: tests/test_benchmark.py; `bench --help` runs here",
    "./run.sh bench --parts producer": "a benchmark part: `bench --help` runs here",
    "./run.sh faults": "minutes of faults: tests/test_faults.py runs every scenario, shorter",
    "./run.sh down airflow && USERS_API_URL=http://127.0.0.1:8765/api/ ./run.sh up airflow": (
        "restarts the user's Airflow with another API: tests/test_end_to_end.py passes api_url"
    ),
    "CASSANDRA_HEAP=512M ./run.sh up": "a heap for a fresh start; `./run.sh up` runs here",
    "STACK_TOPOLOGY=cluster ./run.sh up": (
        "the other topology over the user's stack: tests/test_cluster.py brings one up with "
        "`./run.sh up` on addresses and a state folder of its own"
    ),
    "./run.sh down spark-worker-2": (
        "a worker of the cluster topology: tests/test_cluster.py stops and starts its own"
    ),
    "SPARK_WORKERS=3 ./run.sh up spark-worker-3": (
        "a third worker: tests/test_cluster.py runs it on the suite's cluster"
    ),
}


def readme_commands() -> list[str]:
    """Each distinct `./run.sh ...` command of the README (code spans and code blocks), without
    usage forms (`[ARGS]`), comments or trailing punctuation."""
    found = re.findall(r"`([^`\n]*\./run\.sh[^`\n]*)`", README)
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        found += [line.split("  #")[0] for line in block.splitlines() if "./run.sh" in line]
    commands = []
    for text in found:
        command = re.sub(r"\s+#.*$", "", text).strip().rstrip(".,;")
        if "[" not in command and command not in commands:
            commands.append(command)
    return commands


def readme_cql() -> list[str]:
    return [
        line.strip()
        for block in re.findall(r"```sql\n(.*?)```", README, flags=re.S)
        for line in block.splitlines()
        if line.strip()
    ]


def run(command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_every_readme_command_is_run_here_or_says_where_it_is_run() -> None:
    commands = readme_commands()
    assert "./run.sh status" in commands and "./run.sh test" in commands
    ran_here = set(commands) - set(NOT_RUN_HERE)
    assert ran_here <= set(RUN_HERE), f"run these here or say why not: {ran_here - set(RUN_HERE)}"
    assert set(NOT_RUN_HERE) <= set(commands), (
        f"gone from README: {set(NOT_RUN_HERE) - set(commands)}"
    )


def _trigger(command: str, airflow_client) -> None:
    """The README's trigger line as written, on the DAG paused so that the run (to randomuser.me,
    unreachable here) never starts; the run is checked, then deleted, and the DAG unpaused."""
    dag = config.DAG_ID
    was_paused = airflow_client.call("GET", f"/dags/{dag}")["is_paused"]
    airflow_client.call("PATCH", f"/dags/{dag}", json={"is_paused": True})
    try:
        before = {r["dag_run_id"] for r in _runs(airflow_client)}
        result = run(command)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        new = [r for r in _runs(airflow_client) if r["dag_run_id"] not in before]
        assert len(new) == 1 and new[0]["state"] == "queued"
        match = re.search(r"--conf '(.*)'", command)
        assert new[0]["conf"] == (json.loads(match.group(1)) if match else {})
        airflow_client.call("DELETE", f"/dags/{dag}/dagRuns/{new[0]['dag_run_id']}")
    finally:
        airflow_client.call("PATCH", f"/dags/{dag}", json={"is_paused": was_paused})


def _runs(airflow_client) -> list[dict]:
    reply = airflow_client.call("GET", f"/dags/{config.DAG_ID}/dagRuns", params={"limit": 100})
    return reply["dag_runs"]


# What each command run here must print (a piece of its output), beside exiting 0.
RUN_HERE = {
    "./run.sh status": "PIPELINE",
    "./run.sh up": "stack up in",
    "./run.sh stream": "spark-stream",
    "./run.sh cqlsh": None,  # the CQL below runs through it
    './run.sh cqlsh -e "SELECT topic, partition, offset, reason FROM spark_streams.dead_letters '
    'LIMIT 20;"': "rows)",
    "./run.sh airflow dags trigger user_automation": None,  # _trigger
    "./run.sh airflow dags trigger user_automation --conf "
    """'{"total": 10000, "seed": "demo"}'""": None,
}


@pytest.mark.parametrize("command", [c for c in RUN_HERE if RUN_HERE[c]])
def test_a_readme_command_runs_as_written(command: str) -> None:
    result = run(command)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert RUN_HERE[command] in result.stdout


@pytest.mark.parametrize("command", [c for c in RUN_HERE if "dags trigger" in c])
def test_a_readme_trigger_line_creates_the_run_it_says(command: str, airflow_client) -> None:
    _trigger(command, airflow_client)


@pytest.mark.parametrize("query", readme_cql())
def test_a_readme_query_runs_through_run_sh_cqlsh(query: str, cassandra_session) -> None:
    result = run(f"./run.sh cqlsh -e {shlex.quote(query)}")
    assert result.returncode == 0 and "rows)" in result.stdout, result.stdout + result.stderr
    if "COUNT(*)" in query:
        table = re.search(r"FROM (\S+?);", query).group(1)
        expected = cassandra_session.execute(f"SELECT COUNT(*) FROM {table}").one()[0]
        assert re.search(rf"^\s*{expected}\s*$", result.stdout, flags=re.M)


def test_the_bench_and_faults_commands_the_readme_names_exist() -> None:
    for command in ("./run.sh bench --help", "./run.sh faults --help"):
        result = run(command, timeout=120)
        assert result.returncode == 0 and "usage: ./run.sh" in result.stdout
