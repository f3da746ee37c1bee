"""The DAG file parses in Airflow without import errors and declares the documented DAG."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dags_folder_has_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"user_automation"}


def test_user_automation_runs_daily_without_catchup(dagbag) -> None:
    dag = dagbag.dags["user_automation"]
    assert dag.schedule == "@daily"
    assert dag.catchup is False
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"


def test_user_automation_has_one_task_that_streams_users(dagbag) -> None:
    dag = dagbag.dags["user_automation"]
    assert dag.task_ids == ["stream_users"]
    assert dag.get_task("stream_users").retries == 0


def test_dag_file_does_no_work_at_parse_time() -> None:
    """Kafka and the API are imported inside the task, so parsing the DAG stays cheap and safe."""
    tree = ast.parse((DAGS / "kafka_stream.py").read_text(encoding="utf-8"))
    top_level_imports = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not {m for m in top_level_imports if m and m.startswith(("pipeline", "kafka"))}
