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


def test_every_run_param_is_a_typed_dag_param_that_defaults_to_the_environment(dagbag) -> None:
    from pipeline import config

    params = dagbag.dags["user_automation"].params
    assert set(params.keys()) == set(config.RUN_PARAMS)
    rate = params.get_param("users_per_second")
    assert rate.value is None  # empty: USERS_PER_SECOND; 0 is a rate of its own (unpaced)
    assert (rate.resolve(0), rate.resolve(350.5)) == (0, 350.5)
    with pytest.raises(ValueError):  # Airflow's ParamValidationError
        rate.resolve(-1)
    with pytest.raises(ValueError):  # Airflow's ParamValidationError
        rate.resolve("fast")


def test_a_param_left_at_its_default_takes_the_environment_and_0_users_per_second_does_not(
    dagbag,
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("kafka_stream_dag", DAGS / "kafka_stream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = {**dagbag.dags["user_automation"].params.dump(), "seed": "s", "users_per_second": 0}
    assert module.run_overrides(params) == {"seed": "s", "users_per_second": 0}
    assert module.run_overrides({"users_per_second": None, "colour": "red"}) == {"colour": "red"}


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
