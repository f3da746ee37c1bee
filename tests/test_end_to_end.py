"""End to end through the real Airflow scheduler, Kafka, Spark and Cassandra.

One DAG run of `user_automation` is triggered through Airflow's REST API (as the UI's Trigger
button does) against the bundled randomuser-compatible server with a fixed seed; the scheduler
runs it with the LocalExecutor. A stream job of its own reads the run's topic into a keyspace of
its own, so the assertions see exactly this run's data.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import count_when_ready, read_topic, topic_end_offsets

from pipeline import config, contract
from pipeline.formatting import Skip, format_user
from pipeline.randomuser import RandomUserClient, iter_batches
from script.harness.side import QUICK_WARM_UP
from script.pipeline_status import checkpoint_offsets
from script.procs import stop_tree
from script.services.cassandra import drop_side_keyspace, set_up_side_keyspace
from script.services.stream import spawn_stream_job
from standin import StandIn

REPO = Path(__file__).resolve().parents[1]
USERS = 2500
SEED = "e2e-fixed-seed"
DAG_ID = config.DAG_ID


@pytest.fixture(scope="module")
def standin():
    with StandIn(port=0) as server:
        yield server


@pytest.fixture(scope="module")
def e2e(settings, kafka_bootstrap, cassandra_session, standin, airflow_client):
    """Start a stream job on a fresh topic/keyspace, trigger the DAG once, wait for the rows."""
    suffix = os.urandom(4).hex()
    topic, keyspace = f"e2e-users-{suffix}", f"e2e_{suffix}"
    checkpoint = REPO / ".stack" / "data" / "test" / f"e2e-{suffix}"
    log_path = REPO / ".stack" / "logs" / f"test-e2e-stream-{suffix}.log"
    overrides = {
        "KAFKA_TOPIC": topic,
        "CASSANDRA_KEYSPACE": keyspace,
        "SPARK_CHECKPOINT_DIR": str(checkpoint),
        "SPARK_TRIGGER_INTERVAL": "1 second",
        "SPARK_UI_PORT": "4061",
        **QUICK_WARM_UP,
    }
    # The job may only check its tables: set-up makes them and a writer role of its own.
    overrides.update(set_up_side_keyspace(overrides))
    job = spawn_stream_job(overrides, log_path)
    try:
        airflow_client.wait_for_dag(DAG_ID)
        airflow_client.unpause(DAG_ID)
        conf = {"api_url": standin.url, "seed": SEED, "total": USERS, "topic": topic}
        run_id = airflow_client.trigger(DAG_ID, conf)
        state = airflow_client.wait_for_run(DAG_ID, run_id, timeout=600, progress=0)
        stats = airflow_client.xcom(DAG_ID, run_id, "stream_users") if state == "success" else {}
        # Where this run's messages end: a later trigger appends after these offsets.
        end_offsets = topic_end_offsets(kafka_bootstrap, topic) if state == "success" else {}
        wait_for_rows(cassandra_session, keyspace, settings.cassandra.table, USERS, job, log_path)
        yield {
            "topic": topic,
            "keyspace": keyspace,
            "checkpoint": checkpoint,
            "run_id": run_id,
            "state": state,
            "stats": stats,
            "end_offsets": end_offsets,
            "conf": conf,
            "job": job,
            "log": log_path,
        }
    finally:
        stop_tree("e2e stream job", job.pid, timeout=60)
        drop_side_keyspace(overrides)


def wait_for_rows(
    session, keyspace: str, table: str, expected: int, job, log: Path, timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        assert job.poll() is None, f"stream job exited: {log.read_text()[-3000:]}"
        count = count_when_ready(session, keyspace, table)
        if count >= expected:
            return
        time.sleep(2)
    pytest.fail(
        f"{count} of {expected} rows in {keyspace}.{table} after {timeout:.0f}s; stream log {log}"
    )


def served_users(api_url: str) -> dict[str, dict]:
    """What the API serves for the run's seed and size, formatted (produce time aside)."""
    api = config.load(
        {**os.environ, "USERS_API_URL": api_url, "USERS_SEED": SEED, "USERS_TOTAL": str(USERS)}
    ).api
    expected = {}
    for batch in iter_batches(RandomUserClient(api), SEED):
        for raw in batch.users:
            record = format_user(raw, produced_at=0)
            assert not isinstance(record, Skip), record
            expected[record["id"]] = record
    return expected


def without_produce_time(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "produced_at"}


def test_the_scheduler_runs_the_dag_to_success_and_counts_every_user(e2e) -> None:
    assert e2e["state"] == "success"
    stats = e2e["stats"]
    assert (stats["fetched"], stats["sent"], stats["skipped"], stats["failed"]) == (
        USERS,
        USERS,
        0,
        0,
    )
    assert stats["topic"] == e2e["topic"] and stats["seed"] == SEED


def test_kafka_holds_exactly_the_served_users_keyed_by_id(e2e, kafka_bootstrap, standin) -> None:
    """The first run's messages, read up to where they ended (a second trigger's come after)."""
    expected = served_users(standin.url)
    messages = read_topic(kafka_bootstrap, e2e["topic"], e2e["end_offsets"])
    assert len(e2e["end_offsets"]) == settings_partitions()
    assert len(messages) == USERS
    values = {}
    for m in messages:
        value = json.loads(m.value.decode("utf-8"))
        assert m.key.decode("utf-8") == value["id"]
        contract.validate(value)
        values[value["id"]] = without_produce_time(value)
    assert values == {k: without_produce_time(v) for k, v in expected.items()}


def settings_partitions() -> int:
    return config.load().kafka.partitions


def test_cassandra_holds_every_served_user_field_for_field(
    e2e, cassandra_session, standin, settings
) -> None:
    expected = served_users(standin.url)
    columns = ", ".join(contract.FIELD_NAMES)
    table = f"{e2e['keyspace']}.{settings.cassandra.table}"
    rows = cassandra_session.execute(f"SELECT {columns} FROM {table}")
    stored = {r.id: r._asdict() for r in rows}
    assert len(stored) == USERS  # no extra rows
    assert {k: without_produce_time(v) for k, v in stored.items()} == {
        k: without_produce_time(v) for k, v in expected.items()
    }
    assert all(v["produced_at"] > 1_700_000_000_000 for v in stored.values())


def test_nothing_lands_in_dead_letters(e2e, cassandra_session, settings) -> None:
    table = f"{e2e['keyspace']}.{settings.cassandra.dead_letter_table}"
    assert cassandra_session.execute(f"SELECT COUNT(*) FROM {table}").one()[0] == 0


def test_a_second_trigger_with_the_same_seed_adds_no_rows(
    e2e, airflow_client, cassandra_session, settings, kafka_bootstrap
) -> None:
    run_id = airflow_client.trigger(DAG_ID, e2e["conf"])
    assert airflow_client.wait_for_run(DAG_ID, run_id, timeout=600, progress=0) == "success"
    # Wait until the stream job has committed everything the topic now holds (2 x USERS).
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        _, committed = checkpoint_offsets(str(e2e["checkpoint"]), e2e["topic"])
        if sum(committed.values()) >= 2 * USERS:
            break
        time.sleep(2)
    else:
        pytest.fail(f"stream job did not read the replay; log {e2e['log']}")
    table = f"{e2e['keyspace']}.{settings.cassandra.table}"
    assert cassandra_session.execute(f"SELECT COUNT(*) FROM {table}").one()[0] == USERS
