"""The DAG file parses in Airflow without import errors and declares the documented DAG."""

from __future__ import annotations

import ast
import copy
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline import config

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dags_folder_has_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {config.DAG_ID}


def test_user_automation_runs_daily_without_catchup(dagbag) -> None:
    dag = dagbag.dags[config.DAG_ID]
    assert dag.timetable.expression == "0 0 * * *"  # @daily
    assert dag.catchup is False
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"


@pytest.mark.parametrize("hour, minute", [(0, 50), (2, 0), (12, 0), (23, 51)])
def test_a_new_dag_first_runs_at_the_next_midnight_whenever_it_appears(
    dagbag, monkeypatch, hour: int, minute: int
) -> None:
    """The scheduler's first run of the DAG, as it computes it when the DAG appears (a first
    `./run.sh`): the next midnight, never the one just gone (a run nobody asked for)."""
    import airflow.timetables.trigger as trigger
    import pendulum
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    now = pendulum.datetime(2026, 12, 4, hour, minute, tz="UTC")
    monkeypatch.setattr(trigger, "utcnow", lambda: now)
    timetable = coerce_to_core_timetable(dagbag.dags[config.DAG_ID].timetable)
    first = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=None, latest=None, catchup=False),
    )
    assert first is not None
    assert first.run_after == pendulum.datetime(2026, 12, 5, tz="UTC")


def test_user_automation_has_one_task_that_streams_users(dagbag) -> None:
    dag = dagbag.dags[config.DAG_ID]
    assert dag.task_ids == ["stream_users"]


def test_the_task_retries_and_is_bounded_as_the_settings_say(dagbag) -> None:
    task = dagbag.dags[config.DAG_ID].get_task("stream_users")
    settings = config.load_task({})  # the table's defaults (the test environment sets none)
    assert settings.retries >= 1
    assert (task.retries, task.retry_delay, task.execution_timeout) == (
        settings.retries,
        timedelta(seconds=settings.retry_delay_seconds),
        timedelta(seconds=settings.timeout_seconds),
    )


def test_the_task_settings_come_from_the_environment_when_airflow_parses_the_dag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("DAG_TASK_RETRIES", "5")
    monkeypatch.setenv("DAG_TASK_RETRY_DELAY_SECONDS", "12.5")
    monkeypatch.setenv("DAG_TASK_TIMEOUT_SECONDS", "99")
    task = DagBag(dag_folder=str(DAGS)).dags[config.DAG_ID].get_task("stream_users")
    assert (task.retries, task.retry_delay, task.execution_timeout) == (
        5,
        timedelta(seconds=12.5),
        timedelta(seconds=99),
    )


def test_every_run_param_is_a_typed_dag_param_that_defaults_to_the_environment(dagbag) -> None:
    params = dagbag.dags[config.DAG_ID].params
    assert set(params.keys()) == set(config.RUN_PARAMS)
    rate = params.get_param("users_per_second")
    assert rate.value is None  # empty: USERS_PER_SECOND; 0 is a rate of its own (unpaced)
    assert (rate.resolve(0), rate.resolve(350.5)) == (0, 350.5)
    with pytest.raises(ValueError):  # Airflow's ParamValidationError
        rate.resolve(-1)
    with pytest.raises(ValueError):  # Airflow's ParamValidationError
        rate.resolve("fast")


def test_each_param_refuses_what_its_variable_refuses_and_takes_its_default(dagbag) -> None:
    """The Trigger form and `./run.sh` hold one rule: the variable's in the settings table."""
    # A copy: Param.resolve() keeps the value it resolved.
    for name, param in copy.deepcopy(dagbag.dags[config.DAG_ID].params).items():
        variable = config.BY_NAME[config.RUN_PARAMS[name]]
        default = param.value
        assert param.resolve(default) == default  # the form opens valid
        if variable.kind in (config.WHOLE, config.NUMBER):
            assert param.resolve(variable.minimum + 1) == variable.minimum + 1
            config.read(variable, str(variable.minimum + 1))
            below = min(variable.minimum, default or 0) - 1
            with pytest.raises(ValueError):  # Airflow's ParamValidationError
                param.resolve(below)
            with pytest.raises(ValueError):
                config.read(variable, str(below))
        else:
            assert param.resolve("http://x/") == "http://x/"


def test_a_param_left_at_its_default_takes_the_environment_and_0_users_per_second_does_not(
    dagbag,
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("kafka_stream_dag", DAGS / "kafka_stream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = {**dagbag.dags[config.DAG_ID].params.dump(), "seed": "s", "users_per_second": 0}
    assert module.run_overrides(params) == {"seed": "s", "users_per_second": 0}
    assert module.run_overrides({"users_per_second": None, "colour": "red"}) == {"colour": "red"}


def top_level_imports(path: Path) -> set[str]:
    """The modules ``path`` imports when it is loaded (not inside functions)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_dag_file_does_no_work_at_parse_time() -> None:
    """Kafka and the API are imported inside the task, so parsing the DAG stays cheap and safe.

    The one module of ours it imports at parse time is the settings, which needs only the
    standard library.
    """
    dag_imports = top_level_imports(DAGS / "kafka_stream.py")
    assert {m for m in dag_imports if m.startswith(("pipeline", "kafka"))} == {"pipeline.config"}
    config_imports = top_level_imports(REPO / "pipeline" / "config.py")
    assert {m.split(".")[0] for m in config_imports} <= sys.stdlib_module_names | {"__future__"}
