"""Airflow's UI as a user drives it, in a real browser: log in at :8080, open `user_automation`,
press Trigger, see the run succeed, and find its users as rows in Cassandra.

The Trigger dialog must open valid: every DAG parameter's default means "use the environment"
in a form Airflow accepts untouched. A run with nothing changed does what `./run.sh` does (the
API it chose, the time budget, the pace); a run with a small `total` sends exactly that many.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

import pytest
from playwright.sync_api import Page, expect

from pipeline import config
from pipeline.randomuser import RandomUserClient
from script.run_pipeline import wait_caught_up
from script.services.airflow import airflow_admin, scheduler_users_api

DAG_ID = config.DAG_ID
TASK_ID = "stream_users"


def log_in(page: Page, settings: config.Settings) -> None:
    user, password = airflow_admin()
    page.goto(settings.stack.airflow_url)
    page.get_by_label(re.compile("username", re.I)).fill(user)
    page.get_by_label(re.compile("password", re.I)).fill(password)
    page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login)"))


def trigger_in_ui(page: Page, settings: config.Settings, total: int | None = None) -> str:
    """Open the DAG, press Trigger, change at most `total`, confirm; the new run's id."""
    page.goto(f"{settings.stack.airflow_url}/dags/{DAG_ID}")
    page.get_by_role("button", name=re.compile(r"^\s*Trigger", re.I)).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Run Parameters")).to_be_visible()
    if total is not None:
        dialog.get_by_label("total").fill(str(total))
    confirm = dialog.get_by_role("button", name=re.compile(r"^\s*Trigger\s*$", re.I))
    expect(confirm).to_be_enabled()  # the form is valid as it opened (or with `total` set)
    confirm.click()
    page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/[^/]+$"), timeout=60_000)
    return unquote(page.url.rsplit("/runs/", 1)[1])


def see_state_in_ui(page: Page, run_id: str, state: str) -> None:
    """The run's page shows ``state`` beside the run's id (the UI refreshes it by itself)."""
    header = page.get_by_role("heading", name=run_id)
    expect(header).to_be_visible()
    expect(page.get_by_text(re.compile(rf"^\s*{state}\s*$", re.I)).first).to_be_visible(
        timeout=60_000
    )


def served_ids(stats: dict) -> list[str]:
    """The ids of the users the run sent, asked again from the API it used: the same seed and
    pages give the same users, a short last page being a prefix of a full one."""
    api = config.load({**os.environ, "USERS_API_URL": stats["api_url"]}).api
    client = RandomUserClient(api)
    ids: list[str] = []
    page = stats["first_page"]
    while len(ids) < stats["sent"]:
        ids += [u["login"]["uuid"] for u in client.fetch(api.per_request, stats["seed"], page)]
        page += 1
    return ids[: stats["sent"]]


def missing_rows(session, settings: config.Settings, ids: list[str]) -> list[str]:
    from cassandra.query import ValueSequence

    c = settings.cassandra
    found: set[str] = set()
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        rows = session.execute(
            f"SELECT id FROM {c.keyspace}.{c.table} WHERE id IN %s",
            (ValueSequence(chunk),),
            timeout=60,
        )
        found.update(r.id for r in rows)
    return [i for i in ids if i not in found]


def run_lands(airflow_client, session, settings: config.Settings, run_id: str) -> dict:
    """Wait for the run through Airflow's API, then for the user's stream job to catch up; the
    run's counts, every user it sent checked to be a row."""
    state = airflow_client.wait_for_run(DAG_ID, run_id, timeout=1800, progress=0)
    assert state == "success", f"{run_id} ended {state}: see .stack/logs/airflow-tasks/"
    stats = airflow_client.xcom(DAG_ID, run_id, TASK_ID)
    assert stats["sent"] > 0 and stats["failed"] == 0 and stats["skipped"] == 0, stats
    wait_caught_up(settings, timeout=1800)
    missing = missing_rows(session, settings, served_ids(stats))
    assert not missing, f"{len(missing)} of {stats['sent']} users are not rows, e.g. {missing[:3]}"
    return stats


@pytest.fixture
def logged_in(page: Page, settings: config.Settings, airflow_client) -> Page:
    airflow_client.wait_for_dag(DAG_ID)
    log_in(page, settings)
    return page


def test_the_trigger_dialog_opens_valid_and_a_run_left_as_it_is_does_what_run_sh_does(
    logged_in: Page, settings, airflow_client, cassandra_session, user_pipeline_stays_healthy
) -> None:
    run_id = trigger_in_ui(logged_in, settings)
    stats = run_lands(airflow_client, cassandra_session, settings, run_id)
    see_state_in_ui(logged_in, run_id, "success")
    api = settings.api
    # The environment's settings, as `./run.sh` runs them: the API its last run chose (the
    # scheduler's), the time budget at the configured pace.
    assert stats["topic"] == settings.kafka.topic
    assert stats["paced_per_second"] == api.per_second
    assert stats["api_url"] == (scheduler_users_api() or config.load({}).api.url)
    assert stats["fetched"] <= api.per_second * api.run_seconds


def test_a_run_with_a_small_total_from_the_form_sends_exactly_that_many(
    logged_in: Page, settings, airflow_client, cassandra_session, user_pipeline_stays_healthy
) -> None:
    run_id = trigger_in_ui(logged_in, settings, total=700)
    stats = run_lands(airflow_client, cassandra_session, settings, run_id)
    see_state_in_ui(logged_in, run_id, "success")
    assert (stats["fetched"], stats["sent"]) == (700, 700)
