"""The README stays true: every setting with its default, the DAG id, and the commands CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import imported_modules

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


# The parts of the README's module diagram (node id -> files), to hold its arrows to the code.
DIAGRAM_PARTS = {
    "dags": ["dags/"],
    "stream": ["spark_stream.py"],
    "pipeline": ["pipeline/"],
    "standin": ["standin/"],
    "tools": [
        "script/__main__.py",
        "script/run_pipeline.py",
        "script/status.py",
        "script/cluster_status.py",
        "script/suite.py",
        "script/benchmark/",
        "script/harness/",
        "script/faults/",
        "script/monitor/",
    ],
    "stack": ["script/stack.py"],
    "services": ["script/services/"],
    "basics": [
        "script/layout.py",
        "script/procs.py",
        "script/jars.py",
        "script/supervise.py",
        "script/airflow_api.py",
        "script/pipeline_status.py",
    ],
}


def _part_of(path: str) -> str | None:
    for part, prefixes in DIAGRAM_PARTS.items():
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in prefixes):
            return part
    return None


def _module_path(module: str) -> str | None:
    """``script.services.kafka`` -> its file, relative to the repo; None when not ours."""
    base = REPO / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return str(candidate.relative_to(REPO))
    return None


def code_arrows() -> set[tuple[str, str]]:
    """(importer part, imported part) for every import between two parts, read with ast."""
    arrows = set()
    files = [REPO / "spark_stream.py", *REPO.glob("dags/*.py")]
    files += [f for d in ("pipeline", "standin", "script") for f in (REPO / d).rglob("*.py")]
    for file in files:
        source = _part_of(str(file.relative_to(REPO)))
        for module in imported_modules(file):
            path = _module_path(module)
            target = _part_of(path) if path else None
            if source and target and target != source:
                arrows.add((source, target))
    return arrows


def test_the_module_diagram_draws_every_import_between_its_parts_and_no_other() -> None:
    diagram = re.search(r"```mermaid\nflowchart TD\n(.*?)```", README, flags=re.S)
    assert diagram, "README.md has lost its module diagram (a mermaid flowchart)"
    drawn = set(re.findall(r"^\s*(\w+)(?:\[[^\]]*\])? --> (\w+)", diagram.group(1), flags=re.M))
    assert drawn == code_arrows(), (
        f"draw {sorted(code_arrows() - drawn)}, remove {sorted(drawn - code_arrows())}"
    )


def test_every_module_of_ours_is_in_a_part_of_the_diagram() -> None:
    ours = [REPO / "spark_stream.py", *REPO.glob("dags/*.py")]
    ours += [f for d in ("pipeline", "standin", "script") for f in (REPO / d).rglob("*.py")]
    loose = [str(f.relative_to(REPO)) for f in ours if _part_of(str(f.relative_to(REPO))) is None]
    assert loose == ["script/__init__.py"]
