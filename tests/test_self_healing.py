"""The stream job heals itself, shown on the real local services with users flowing.

Each test runs a supervised job of its own (``script.faults.rig.SupervisedJob``: ``./run.sh
supervise -- spark-submit ...``, as ``./run.sh stream`` does) on its own topic, keyspace, role
and checkpoint, offers users at a steady rate, breaks something (its Python workers frozen,
Cassandra frozen, SIGTERM while a write is retrying, a topic that does not exist yet, a message
Cassandra would refuse), and then counts: every user the broker acknowledged is one row in
Cassandra, equal to what was sent, and nothing else is. Cassandra stopped, the broker restarted
and the job SIGKILLed are the fault scenarios (tests/test_faults.py). A stream job that was
already running (the user's) is checked to have caught up again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from pipeline import contract, producer
from script import services
from script.faults.rig import Feeder, SupervisedJob, users
from script.harness.side import QUICK_WARM_UP
from script.procs import process_tree
from spark_stream import CONNECTOR_CONF, NO_TOPIC_YET

RATE = 1000  # users per second offered, as the issue asks
# How long the connector takes at most to give up on a write to a Cassandra that does not
# answer (every try of the request timed out, after its connection timeout), with room for a
# busy machine: the waits below derive from the job's own settings, not from a quiet machine.
WRITE_GIVES_UP_S = (
    3
    * (
        int(CONNECTOR_CONF["spark.cassandra.read.timeoutMS"])
        * (int(CONNECTOR_CONF["spark.cassandra.query.retry.count"]) + 1)
        + int(CONNECTOR_CONF["spark.cassandra.connection.timeoutMS"])
    )
    / 1000
)


@pytest.fixture
def side_job(kafka_bootstrap: str) -> Iterator[Callable[..., SupervisedJob]]:
    """Makes supervised side jobs (script/faults/rig.py); each is stopped and its topic,
    keyspace, role and checkpoint dropped afterwards."""
    with ExitStack() as jobs:

        def make(
            name: str, overrides: dict[str, str] | None = None, topic: bool = True
        ) -> SupervisedJob:
            env = {**QUICK_WARM_UP, **(overrides or {})}
            return jobs.enter_context(SupervisedJob(name, env, topic=topic))

        yield make


def assert_every_acked_user_is_one_equal_row(
    job: SupervisedJob, feeder: Feeder, timeout: float = 300
) -> None:
    expected = feeder.acked
    assert len(expected) > 0
    job.wait_for(lambda: job.count() >= len(expected), "rows for every user", timeout)
    stored = job.stored()
    assert stored.keys() == expected.keys()  # nothing lost, nothing extra
    assert stored == expected  # field for field


@contextmanager
def cassandra_frozen() -> Iterator[None]:
    """Cassandra stopped with SIGSTOP (it accepts connections and never answers: a wedged node
    or a partition) for the block, and woken afterwards whatever happened."""
    pid = services.named("cassandra").main_pid()  # not its supervisor
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextmanager
def python_workers_frozen(job: SupervisedJob) -> Iterator[None]:
    """The job's Python workers (its daemon and the workers it forked, which run the parse)
    stopped with SIGSTOP for the block: the batch in flight waits for them without end and
    without an error, a stuck task that nothing interrupts. Woken afterwards whatever happened
    (those of a job that exited meanwhile then see their JVM gone and leave)."""
    pid = job.job_pid()
    assert pid, f"no job running; see {job.log}"
    workers = [p for p in process_tree(pid) if b"spark_daemon" in cmdline(p)]
    assert workers, f"the job has no Python workers; see {job.log}"
    for worker in workers:
        os.kill(worker, signal.SIGSTOP)
    try:
        yield
    finally:
        for worker in workers:
            with suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_stalled_query_fails_and_its_supervisor_restarts_it(
    side_job: Callable[..., SupervisedJob], user_pipeline_stays_healthy: None
) -> None:
    job = side_job("stall", {"SPARK_STALL_SECONDS": "8"})
    job.start()
    with Feeder(job.settings, RATE) as feeder:
        job.next_batch(180)
        first = job.job_pid()
        # A Cassandra that does not answer is waited for (the job stays up, see the test
        # below and tests/test_faults.py); a batch stuck in a task is the watchdog's case.
        with python_workers_frozen(job):
            job.wait_for(lambda: job.restarts() >= 1, "restart by the supervisor", 120)
        assert job.job_pid() != first
        job.next_batch(180)
    assert_every_acked_user_is_one_equal_row(job, feeder)
    assert "no progress for" in job.text()
    assert "restart 1" in job.text()


def test_sigterm_stops_the_job_within_30_s_while_a_write_is_retrying(
    side_job: Callable[..., SupervisedJob], user_pipeline_stays_healthy: None
) -> None:
    job = side_job("sigterm")
    job.start()
    with Feeder(job.settings, RATE) as feeder:
        job.next_batch(180)
        with cassandra_frozen():
            job.wait_for(lambda: "write failed" in job.text(), "failed write", WRITE_GIVES_UP_S)
            assert job.process is not None
            job.process.send_signal(signal.SIGTERM)
            try:
                status = job.process.wait(timeout=35)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the job was still running 35 s after SIGTERM; see {job.log}")
    assert status == 0
    assert "job stopped (exit 0)" in job.text()  # the job's own status, not a SIGKILL
    # What it abandoned is replayed by the next run: nothing is lost.
    job.start()
    assert_every_acked_user_is_one_equal_row(job, feeder)


def test_a_topic_created_under_the_job_is_read_and_oversize_values_become_dead_letters(
    side_job: Callable[..., SupervisedJob], kafka_bootstrap: str, cassandra_session: Any
) -> None:
    job = side_job("topic", topic=False)
    job.start()  # the topic does not exist yet
    job.wait_for(lambda: NO_TOPIC_YET in job.text(), "report that the topic is missing", 60)
    producer.ensure_topic(job.settings.kafka)
    big = "x" * (contract.MAX_STRING_BYTES + 1)
    record = {**next(users(1)), "produced_at": int(time.time() * 1000)}
    refused = [
        {**record, "id": big},  # Cassandra refuses a partition key over 64 KiB
        {**record, "address": big},
    ]
    with Feeder(job.settings, 200) as feeder:
        sender = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=1_048_576)
        for record in refused:
            sender.send(job.topic, key=b"big", value=producer.encode_value(record))
        sender.flush()
        sender.close()
        time.sleep(2)  # more users after the refused ones
    assert_every_acked_user_is_one_equal_row(job, feeder)
    job.wait_for(lambda: job.count("dead_letters") == 2, "two dead letters", 60)
    reasons = sorted(
        row.reason
        for row in cassandra_session.execute(f"SELECT reason FROM {job.keyspace}.dead_letters")
    )
    limit = contract.MAX_STRING_BYTES
    assert reasons == [
        f"too long for address: {limit + 1} bytes, at most {limit}",
        f"too long for id: {limit + 1} bytes, at most {limit}",
    ]
    assert job.restarts() == 0
