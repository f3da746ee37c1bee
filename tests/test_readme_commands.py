"""Every `./run.sh` command and CQL query the README and docs/ show, run as written.

The commands are read from README.md and every page of docs/ themselves, so the two cannot
drift: a command is either run here (and must succeed), or named in ``NOT_RUN_HERE`` with the
reason and the test that runs it instead. A new command in the docs that is neither fails the
first test. Every query is bounded, so it answers on a table of a million rows as on a new one.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from docs_pages import code_blocks, name, pages, without_code_blocks

from pipeline import config

REPO = Path(__file__).resolve().parents[1]

# Commands the suite does not run as written, each with why and where it is run instead.
NOT_RUN_HERE = {
    "./run.sh": "a whole pipeline run: .ci/run runs it first; tests/test_runner.py runs one",
    "./run.sh --offline": "a pipeline run: tests/test_runner.py runs `--offline --users 3000`",
    "./run.sh --offline --users 20000": "a pipeline run: .ci/run runs exactly this first",
    "./run.sh --users 20000": "a pipeline run from randomuser.me, offline here: see --offline",
    "./run.sh --users-per-second 4000": "a pipeline run; tests/test_runner.py runs the runner",
    "./run.sh test": "this suite",
    "./run.sh test --all": "this suite with its long runs: .ci/run runs it",
    "./run.sh test tests/test_parsing.py": "a file of this suite",
    "./run.sh down": "stops the stack the suite runs against: .ci/run runs it last",
    "./run.sh clean": "deletes the stack's data under the suite",
    "./run.sh clean --all": "deletes the venv the suite runs in",
    "./run.sh stream stop": "stops the user's job: tests/test_self_healing.py stops side jobs",
    "./run.sh bench": "minutes of load: tests/test_benchmark.py; `bench --help` runs here",
    "./run.sh bench --parts idle": "minutes of measurement: `bench --help` runs here",
    "./run.sh bench --runs 1 --seconds 10 --parts latency,memory": (
        "a side stream job under load beside the user's: tests/test_benchmark.py tests the "
        "parts' figures; `bench --help` runs here"
    ),
    "./run.sh faults": "minutes of faults: tests/test_faults.py runs every scenario, shorter",
    "./run.sh faults --scenarios cassandra": "minutes of faults: tests/test_faults.py runs "
    "this scenario, shorter",
    "./run.sh chaos": "30 minutes of faults by default: tests/test_chaos.py runs 3 min",
    "./run.sh chaos --minutes 30 --seed 7": "half an hour: tests/test_chaos.py runs 3 min",
    "./run.sh down airflow && USERS_API_URL=http://127.0.0.1:8765/api/ ./run.sh up airflow": (
        "restarts the user's Airflow with another API: tests/test_end_to_end.py passes api_url"
    ),
    "./run.sh down airflow && USERS_PER_SECOND=4000 ./run.sh up airflow": (
        "restarts the user's Airflow at another rate: tests/test_producer_kafka.py sends at a "
        "set USERS_PER_SECOND"
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


def page_commands(text: str) -> list[str]:
    """Each `./run.sh ...` command of a page (code spans, also ones a line break runs through,
    and bash code blocks), without usage forms (`[ARGS]`), comments or trailing punctuation."""
    found = [
        " ".join(span.split())
        for span in re.findall(r"`([^`]*\./run\.sh[^`]*)`", without_code_blocks(text))
    ]
    for block in code_blocks(text, "bash"):
        found += [line for line in block.splitlines() if "./run.sh" in line]
    commands = []
    for line in found:
        command = re.sub(r"\s+#.*$", "", line).strip().rstrip(".,;")
        if "[" not in command and command not in commands:
            commands.append(command)
    return commands


def docs_commands() -> dict[str, list[str]]:
    """Each distinct command of the README and docs/, with the pages that give it."""
    where: dict[str, list[str]] = {}
    for path in pages():
        for command in page_commands(path.read_text()):
            where.setdefault(command, []).append(name(path))
    return where


def docs_cql() -> list[str]:
    """Each query of the README and docs/: the lines of sql code blocks and `cqlsh -e`'s."""
    queries = []
    for path in pages():
        text = path.read_text()
        for block in code_blocks(text, "sql"):
            queries += [line.strip() for line in block.splitlines()]
        queries += re.findall(r'cqlsh -e "([^"]+)"', " ".join(without_code_blocks(text).split()))
    return list(dict.fromkeys(q for q in queries if q))


def run(command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_every_docs_command_is_run_here_or_says_where_it_is_run() -> None:
    commands = docs_commands()
    assert "./run.sh status" in commands and "./run.sh test" in commands
    ran_here = set(commands) - set(NOT_RUN_HERE)
    missing = {c: commands[c] for c in ran_here - set(RUN_HERE)}
    assert not missing, f"run these here or say why not: {missing}"
    assert set(NOT_RUN_HERE) <= set(commands), (
        f"gone from README.md and docs/: {set(NOT_RUN_HERE) - set(commands)}"
    )
    assert set(RUN_HERE) <= set(commands), (
        f"gone from README.md and docs/: {set(RUN_HERE) - set(commands)}"
    )


def test_every_docs_query_is_bounded_so_it_answers_on_a_million_rows() -> None:
    """A COUNT(*) or a SELECT without a LIMIT reads the whole table: Cassandra times out on it
    once the table is large. Counts come from `./run.sh status`."""
    queries = docs_cql()
    assert queries, "README.md and docs/ show no CQL query"
    unbounded = [
        q
        for q in queries
        if re.search(r"\bCOUNT\s*\(", q, flags=re.I)
        or not re.search(r"\bLIMIT \d+|\bWHERE id = ", q, flags=re.I)
    ]
    assert not unbounded, f"bound these queries (LIMIT n, or WHERE id = ...): {unbounded}"


def _trigger(command: str, airflow_client) -> None:
    """A trigger line of the docs as written, on the DAG paused so that the run (to randomuser.me,
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
def test_a_docs_command_runs_as_written(command: str) -> None:
    result = run(command)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert RUN_HERE[command] in result.stdout


@pytest.mark.parametrize("command", [c for c in RUN_HERE if "dags trigger" in c])
def test_a_docs_trigger_line_creates_the_run_it_says(command: str, airflow_client) -> None:
    _trigger(command, airflow_client)


@pytest.mark.parametrize("query", docs_cql())
def test_a_docs_query_runs_through_run_sh_cqlsh(query: str) -> None:
    result = run(f"./run.sh cqlsh -e {shlex.quote(query)}")
    assert result.returncode == 0 and "rows)" in result.stdout, result.stdout + result.stderr


def test_the_bench_and_faults_commands_the_docs_name_exist() -> None:
    for command in ("./run.sh bench --help", "./run.sh faults --help"):
        result = run(command, timeout=120)
        assert result.returncode == 0 and "usage: ./run.sh" in result.stdout
