"""The ``user_automation`` DAG: once a day, stream randomuser.me users into Kafka.

The work lives in ``pipeline.producer.run`` (fetch -> format -> validate -> send, with the
budget, endpoints and sizes read from the environment by ``pipeline.config``); this file only
schedules it. The task returns the run's counts, never the users themselves.

A failed attempt is retried (``DAG_TASK_RETRIES``, ``DAG_TASK_RETRY_DELAY_SECONDS``) and each
attempt is bounded (``DAG_TASK_TIMEOUT_SECONDS``). Without an explicit seed the seed comes
from the DAG run's id, so a retry fetches the same users: the ones sent twice are upserts.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

# The deployments put the repository on PYTHONPATH. Only the settings are imported at parse
# time (the standard library only); Kafka and the API client are imported by the task.
from pipeline.config import DAG_ID, load_task, param_schema

# A parameter left at its default means "use the environment" (pipeline/config.py); a trigger's
# conf overrides the variable for that run. "Use the environment" is `null` (an empty field) or
# 0, values Airflow's Trigger form accepts untouched, so the dialog opens ready to run. Each
# parameter's type and bounds are its variable's in the settings table (``param_schema``).
PARAMS = {
    name: Param(default, description=description, **param_schema(name, default))
    for name, default, description in (
        ("api_url", None, "users API for this run (empty: USERS_API_URL)"),
        ("total", 0, "users to send (0: time budget)"),
        ("run_seconds", 0, "time budget (0: env)"),
        ("seed", None, "randomuser seed of a reproducible run (empty: USERS_SEED, else run id)"),
        ("start_page", 0, "first page (0: env)"),
        ("topic", None, "Kafka topic (empty: KAFKA_TOPIC)"),
        ("users_per_second", None, "send rate (empty: USERS_PER_SECOND; 0: unpaced)"),
    )
}
# Taken now: Airflow's Param.resolve() overwrites a Param's value with the run's.
PARAM_DEFAULTS = {name: param.value for name, param in PARAMS.items()}
TASK = load_task()


def run_overrides(params: dict[str, object]) -> dict[str, object]:
    """The run's parameters that differ from their defaults (unknown names kept, to be refused)."""
    return {k: v for k, v in params.items() if k not in PARAM_DEFAULTS or v != PARAM_DEFAULTS[k]}


# Daily at midnight UTC, and the first run at the first midnight after the DAG appears: no
# start_date (one in the past makes the scheduler run today's at once), and run_immediately
# zero, since Airflow's default runs the midnight just gone when the DAG appears within 2.4 h of
# it: a first `./run.sh` at 00:50 got a second, scheduled run of 120,000 users beside its own.
@dag(
    dag_id=DAG_ID,
    schedule=CronTriggerTimetable("@daily", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    tags=["randomuser", "kafka"],
    default_args={
        "owner": "airflow",
        "retries": TASK.retries,
        "retry_delay": timedelta(seconds=TASK.retry_delay_seconds),
        "execution_timeout": timedelta(seconds=TASK.timeout_seconds),
    },
    params=PARAMS,
)
def user_automation() -> None:
    """Fetch users from the randomuser API and produce them to the ``users_created`` topic."""

    @task
    def stream_users() -> dict[str, object]:
        """Run one producer pass and return its counts (sent, skipped, failed, rate, seed).

        The run is bounded by USERS_TOTAL users, or else USERS_RUN_SECONDS, and paced at
        USERS_PER_SECOND; it fails when the API gives up, when a send fails or when nothing
        was sent. The seed is the run's ``seed``, else USERS_SEED, else derived from the run id:
        every attempt of one DAG run fetches the same users.
        """
        from pipeline import config, producer

        context = get_current_context()
        params = run_overrides(dict(context["params"]))
        return producer.run(config.load_for_run(params), run_id=context["run_id"]).as_dict()

    stream_users()


user_automation()
