"""The README stays true: every setting with its default, the DAG id, and the commands CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline import config

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_the_configuration_table_is_the_one_pipeline_config_generates() -> None:
    """Every variable with its default, reader and help, exactly as ``VARIABLES`` declares them."""
    table = re.search(
        r"^<!-- Generated from pipeline/config.py .*? -->\n(.*?)^<!-- end of generated table -->",
        README,
        flags=re.S | re.M,
    )
    assert table, "README.md has lost the markers around its configuration table"
    assert table.group(1) == config.markdown(), (
        "README's configuration table is stale: paste the output of "
        "`python -m pipeline.config --markdown` between its markers"
    )


def test_the_readme_triggers_the_dag_by_its_id() -> None:
    triggered = re.findall(r"dags trigger ([\w.-]+)", README)
    assert triggered and set(triggered) == {config.DAG_ID}, triggered


def test_the_port_table_shows_the_local_stacks_default_ports() -> None:
    d = {v.name: v.default for v in config.VARIABLES}
    expected = {
        "Airflow UI / API": d["AIRFLOW_PORT"],
        "Kafka broker": d["KAFKA_BOOTSTRAP_SERVERS"].rpartition(":")[2],
        "ZooKeeper": d["ZOOKEEPER_PORT"],
        "Cassandra (CQL)": d["CASSANDRA_PORT"],
        "PostgreSQL (Airflow metadata)": d["POSTGRES_PORT"],
        "Spark UI (stream job)": d["SPARK_UI_PORT"],
        "randomuser stand-in (offline runs)": d["USERS_STANDIN_PORT"],
    }
    local = dict(re.findall(r"^\| ([^|]+?) \| (\d+) \| yes \|", README, flags=re.M))
    assert local == expected


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    commands = re.search(r"## Two commands\n.*?```bash\n(.*?)```", README, flags=re.S).group(1)
    assert "./run.sh        # " in commands and "./run.sh test   # " in commands
    ci = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    runs = [line.split() for line in ci if line.startswith("./run.sh")]
    assert runs[-1] == ["./run.sh", "test"]
    # The README's first command comes first: a pipeline run (flags only, no sub-command).
    assert runs[0][0] == "./run.sh" and all(
        word.startswith("-") or word.isdigit() for word in runs[0][1:]
    )
