"""Airflow as the first `./run.sh` leaves it (CI runs `./run.sh --offline` before the suite):
no failed run, no run nobody asked for, and every later run uses the API that run chose.

Read from the real scheduler through Airflow's REST API, as the UI's home page shows it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline import config
from script.services.airflow import scheduler_users_api, users_api

DAG_ID = config.DAG_ID


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def dag_runs(airflow_client) -> list[dict]:
    return airflow_client.call(
        "GET", f"/dags/{DAG_ID}/dagRuns", params={"order_by": "start_date", "limit": 1000}
    )["dag_runs"]


def test_no_run_of_the_dag_failed(airflow_client) -> None:
    runs = dag_runs(airflow_client)
    assert runs, "no DAG run: the suite runs after `./run.sh`"
    failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
    assert not failed, f"failed runs (see .stack/logs/airflow-tasks/): {failed}"


def test_unpausing_the_daily_dag_ran_nothing_nobody_asked_for(airflow_client) -> None:
    """The scheduler runs the DAG at the next midnight after it was unpaused, never the day
    that had begun before (which would stream a second batch beside the measured one)."""
    runs = dag_runs(airflow_client)
    first_start = min(when(r["start_date"]) for r in runs if r["start_date"])
    early = [
        r["dag_run_id"]
        for r in runs
        if r["run_type"] == "scheduled" and when(r["run_after"]) < first_start
    ]
    assert not early, f"scheduled runs of intervals before the first run: {early}"
    dag = airflow_client.call("GET", f"/dags/{DAG_ID}")
    assert not dag["is_paused"]
    next_run = when(dag["next_dagrun_run_after"])
    assert next_run > datetime.now(UTC), dag["next_dagrun_run_after"]
    assert (next_run.hour, next_run.minute) == (0, 0)


def test_the_scheduler_runs_tasks_with_the_api_the_run_chose(airflow_client) -> None:
    """The API `./run.sh` chose (the stand-in offline) is in the scheduler's environment, so
    scheduled and UI-triggered runs, which set no `api_url`, fetch from it too."""
    chosen = users_api()
    assert chosen, "`./run.sh` recorded no users API (.stack/data/airflow/users-api-url)"
    assert scheduler_users_api() == chosen
    last = next(r for r in reversed(dag_runs(airflow_client)) if r["state"] == "success")
    stats = airflow_client.xcom(DAG_ID, last["dag_run_id"], "stream_users")
    assert stats["api_url"] in (chosen, (last["conf"] or {}).get("api_url"))
