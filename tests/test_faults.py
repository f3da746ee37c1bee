"""The fault scenarios of `./run.sh faults`, shorter: each one counts users in and rows out, and
nothing is lost and nothing is extra (script/faults/). They stop and start Kafka and Cassandra;
the fixture leaves every service and the user's stream job running and caught up."""

from __future__ import annotations

import pytest

from script.faults import scenarios
from script.faults.scenarios import SHORT

# fault scenarios of minutes each, the soak among them: `./run.sh test --all`
pytestmark = [pytest.mark.long, pytest.mark.usefixtures("user_pipeline_stays_healthy")]


def test_the_stream_job_killed_three_times_loses_and_duplicates_nothing() -> None:
    outcome = scenarios.stream_job_killed(SHORT)
    assert outcome.tried == 3 and "restarts 3" in outcome.note
    assert outcome.sent > 0 and outcome.rows == outcome.sent
    assert (outcome.lost, outcome.extra) == (0, 0)


def test_cassandra_down_mid_run_loses_and_duplicates_nothing() -> None:
    outcome = scenarios.cassandra_down(SHORT)
    assert outcome.sent > 0 and outcome.rows == outcome.sent
    assert (outcome.lost, outcome.extra) == (0, 0)
    assert outcome.recover_s is not None
    # It waited for Cassandra in the same process: no write stuck on the old session
    assert "job restarts 0" in outcome.note, outcome.note


def test_the_broker_restarted_under_the_producer_every_user_reported_sent_is_stored() -> None:
    outcome = scenarios.kafka_restarted(SHORT)
    assert outcome.rows == outcome.sent > 0
    assert (outcome.lost, outcome.extra) == (0, 0)
    # Either the run delivered every user it was asked for, or it failed naming its counts.
    assert f"producer: {SHORT.users:,} sent" in outcome.note or "failed loudly" in outcome.note


def test_api_faults_and_odd_users_each_end_as_a_row_or_a_counted_skip() -> None:
    outcome = scenarios.api_faults(SHORT)
    assert outcome.tried == len([f for f in scenarios.API_FAULTS if f])
    assert outcome.rows == outcome.sent > 0
    assert (outcome.lost, outcome.extra) == (0, 0)
    assert "skipped 7 " in outcome.note  # the seven odd entries that cannot be users


def test_a_task_airflow_retries_ends_with_exactly_the_users_asked_for() -> None:
    outcome = scenarios.airflow_retry(SHORT)
    assert outcome.tried == 1 and "run success after 2 attempts" in outcome.note
    assert outcome.rows == outcome.sent == 10_000
    assert (outcome.lost, outcome.extra) == (0, 0)


def test_each_bad_message_is_a_dead_letter_and_a_duplicate_id_an_upsert() -> None:
    outcome = scenarios.bad_messages(SHORT)
    assert outcome.dead_letters == outcome.tried == len(scenarios.BAD_MESSAGES)
    assert outcome.rows == outcome.sent == 200
    assert (outcome.lost, outcome.extra) == (0, 0)
    assert "restarts 0" in outcome.note


def test_a_short_soak_keeps_up_and_counts_exactly() -> None:
    outcome = scenarios.soak(SHORT)
    assert len(outcome.samples) >= SHORT.soak / SHORT.sample_every - 1
    assert outcome.rows == outcome.sent > SHORT.soak * SHORT.soak_rate * 0.9
    assert (outcome.lost, outcome.extra) == (0, 0)
